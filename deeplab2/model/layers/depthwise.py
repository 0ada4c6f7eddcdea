"""Depthwise convolution with a faster kernel gradient for 5x5 kernels.

The kernel gradient of a stride-1 depthwise convolution is, per channel, the
correlation of the (padded) input with the output gradient: itself a
depthwise convolution, of the input by the output gradient used as a
(feature-map-sized) filter, with a kernel-sized VALID output. On CPU,
oneDNN's depthwise backprop-filter kernel is fast for 3x3 kernels but not for
5x5 ones (Panoptic-DeepLab's heads, MobileNetV3's later blocks): computed as
that forward convolution, one example at a time, the 5x5 kernel gradient of
a 65x129x256 map takes 1.8 ms instead of 13.4 (2-core EPYC). The forward
pass is Keras' own op; only the summation order of the kernel gradient
changes (a relative 1e-5).
"""

import keras
import tensorflow as tf

# Kernels at least this large (both sides) take the forward-convolution
# gradient; oneDNN's own is faster below it.
_MIN_KERNEL_SIZE = 5


def kernel_gradient(inputs: tf.Tensor, output_gradient: tf.Tensor,
                    kernel_shape, padding: str) -> tf.Tensor:
    """The gradient of a stride-1, undilated NHWC depthwise convolution
    (multiplier 1) with respect to its [kh, kw, C, 1] kernel."""
    # Imported here: convolutions builds its layers from this module. At
    # stride 1, TF's SAME padding is DeepLab2's symmetric one.
    from deeplab2.model.layers.convolutions import same_padding
    kernel_height, kernel_width = int(kernel_shape[0]), int(kernel_shape[1])
    if padding == 'SAME':
        inputs = tf.pad(inputs, [[0, 0], same_padding(kernel_height),
                                 same_padding(kernel_width), [0, 0]])

    def one_example(example_inputs, example_gradient):
        # [1, kh, kw, C]: example_gradient [H, W, C] as an [H, W, C, 1]
        # depthwise filter slid over the input.
        return tf.nn.depthwise_conv2d(
            example_inputs[tf.newaxis], example_gradient[..., tf.newaxis],
            [1, 1, 1, 1], 'VALID')[0]

    batch_size = inputs.shape[0]
    if batch_size is not None and batch_size <= 8:
        # Examples one by one: folding the batch into the channels costs two
        # transposes and runs slower than the examples in turn.
        gradient = tf.add_n([one_example(inputs[index],
                                         output_gradient[index])
                             for index in range(batch_size)])
    else:
        gradient = tf.reduce_sum(tf.map_fn(
            lambda pair: one_example(*pair), (inputs, output_gradient),
            fn_output_signature=inputs.dtype), 0)
    return tf.ensure_shape(gradient[..., tf.newaxis],
                           [kernel_height, kernel_width, inputs.shape[-1], 1])


def depthwise_conv2d(inputs: tf.Tensor, kernel: tf.Tensor,
                     padding: str) -> tf.Tensor:
    """tf.nn.depthwise_conv2d at stride 1 (NHWC) with `kernel_gradient`."""

    @tf.custom_gradient
    def convolution(inputs, kernel):
        outputs = tf.nn.depthwise_conv2d(inputs, kernel, [1, 1, 1, 1],
                                         padding)

        def gradient(output_gradient):
            input_gradient = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(inputs), filter=kernel,
                out_backprop=output_gradient, strides=[1, 1, 1, 1],
                padding=padding)
            return input_gradient, kernel_gradient(
                inputs, output_gradient, kernel.shape, padding)

        return outputs, gradient

    return convolution(inputs, kernel)


@keras.saving.register_keras_serializable(package='deeplab2')
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """keras DepthwiseConv2D whose stride-1, channels-last convolutions
    with kernels of at least 5x5 (multiplier 1, any dilation) take
    `kernel_gradient`; same variables, same outputs."""

    def _takes_forward_gradient(self) -> bool:
        return (keras.backend.backend() == 'tensorflow'
                and tuple(self.strides) == (1, 1)
                and self.data_format == 'channels_last'
                and self.depth_multiplier == 1
                and min(self.kernel_size) >= _MIN_KERNEL_SIZE)

    def call(self, inputs):
        if not self._takes_forward_gradient():
            return super().call(inputs)
        kernel = tf.cast(tf.convert_to_tensor(self.kernel), inputs.dtype)

        def undilated(x, num_spatial_dims, padding):
            del num_spatial_dims  # always 2
            return depthwise_conv2d(x, kernel, padding)

        # A dilated kernel runs as TF runs it on CPU: space-to-batch, an
        # undilated convolution, batch-to-space (TF's CPU depthwise op has
        # no dilated kernel of its own). Its undilated core then takes
        # `kernel_gradient` too: 5x5 at rate 2 on 17x33x576, 6.0 -> 2.3 ms.
        outputs = tf.nn.with_space_to_batch(
            tf.convert_to_tensor(inputs), list(self.dilation_rate),
            self.padding.upper(), undilated, filter_shape=self.kernel_size)
        if self.use_bias:
            # Added as Keras adds it, so its gradient sums in Keras' order.
            outputs = outputs + tf.reshape(tf.cast(self.bias, outputs.dtype),
                                           [1, 1, 1, -1])
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
