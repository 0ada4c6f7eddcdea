"""1x1 convolution whose kernel gradient is one matrix product.

At stride 1 a 1x1 convolution is a matrix product over the pixels: with the
input as [pixels, C_in] and the output gradient as [pixels, C_out], the
kernel gradient is input^T @ output_gradient. On CPU that product is faster
than oneDNN's Conv2DBackpropFilter for every 1x1 shape of Panoptic-DeepLab's
MobileNetV3 and ResNet-50 training steps (2-core EPYC, 257x513 crops:
65x129x256 -> 256 takes 13.0 ms as a backprop-filter and 7.0 ms as a
product; the 1x1 kernel gradients of a MobileNetV3-Small step, 99 -> 76 ms).
The forward convolution and the input gradient stay TF's own ops; only the
summation order of the kernel gradient changes (a relative 1e-6).
"""

import tensorflow as tf


def conv2d(inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """tf.nn.conv2d of NHWC `inputs` with a [1, 1, C_in, C_out] kernel at
    stride 1, whose kernel gradient is `kernel_gradient`."""

    @tf.custom_gradient
    def convolution(inputs, kernel):
        outputs = tf.nn.conv2d(inputs, kernel, [1, 1, 1, 1], 'VALID')

        def gradient(output_gradient):
            input_gradient = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(inputs), filter=kernel,
                out_backprop=output_gradient, strides=[1, 1, 1, 1],
                padding='VALID')
            return input_gradient, kernel_gradient(inputs, output_gradient)

        return outputs, gradient

    # As tensors: a variable read inside would make custom_gradient ask for
    # the variable's gradient separately (eager calls hand the kernel over
    # as a variable).
    return convolution(tf.convert_to_tensor(inputs),
                       tf.convert_to_tensor(kernel))


def kernel_gradient(inputs: tf.Tensor,
                    output_gradient: tf.Tensor) -> tf.Tensor:
    """The [1, 1, C_in, C_out] kernel gradient of a stride-1 1x1 NHWC
    convolution: the sum over examples and pixels of the outer products
    of input and output gradient."""
    channels_in = inputs.shape[-1]
    channels_out = output_gradient.shape[-1]
    product = tf.matmul(tf.reshape(inputs, [-1, channels_in]),
                        tf.reshape(output_gradient, [-1, channels_out]),
                        transpose_a=True)
    return tf.reshape(product, [1, 1, channels_in, channels_out])
