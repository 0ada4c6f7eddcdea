"""Kernel gradients of stride-1 convolutions as one matrix product per tap.

Each tap (i, j) of a stride-1 convolution multiplies the input shifted by
the tap's offset with the kernel's [C_in, C_out] slice, so its kernel
gradient is input_region^T @ output_gradient_region over the output
positions whose shifted input lies inside the map (padding contributes
zeros). On CPU, oneDNN's Conv2DBackpropFilter is slower than these products
in two cases, and only those take this path:

- 1x1 kernels (one tap, no shift): 65x129x256 -> 256 takes 13.0 ms as a
  backprop-filter and 7.0 ms as a product; the 1x1 kernel gradients of a
  MobileNetV3-Small step at 257x513, 99 -> 76 ms.
- Dilated kernels, whose outer taps overlap little or nothing of a small
  map: ASPP's 3x3 at rates 6/12/18 on a 17x33x576 map takes 9.3/15.2/14.0
  ms in oneDNN against 8.1/5.0/2.6 ms here, at rates 3/6/9 on 9x17x2048
  10.7/16.6/15.7 against 9.2/6.8/4.8 ms (2-core EPYC).

Undilated kxk kernels keep TF's gradient (no faster this way). The forward
convolution and the input gradient are TF's own ops in every case; only
the summation order of the kernel gradient changes (a relative 1e-6).
"""

import tensorflow as tf


def conv2d(inputs: tf.Tensor, kernel: tf.Tensor, padding: str,
           dilations=(1, 1)) -> tf.Tensor:
    """tf.nn.conv2d at stride 1 (NHWC, 'SAME' or 'VALID') whose kernel
    gradient is `kernel_gradient`."""
    dilations = [1, *dilations, 1]

    @tf.custom_gradient
    def convolution(inputs, kernel):
        outputs = tf.nn.conv2d(inputs, kernel, [1, 1, 1, 1], padding,
                               dilations=dilations)

        def gradient(output_gradient):
            input_gradient = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(inputs), filter=kernel,
                out_backprop=output_gradient, strides=[1, 1, 1, 1],
                padding=padding, dilations=dilations)
            if not (inputs.shape[1:].is_fully_defined()
                    and output_gradient.shape[1:].is_fully_defined()):
                # The taps' regions need static sizes; TF's kernel does not.
                return input_gradient, tf.raw_ops.Conv2DBackpropFilter(
                    input=inputs, filter_sizes=tf.shape(kernel),
                    out_backprop=output_gradient, strides=[1, 1, 1, 1],
                    padding=padding, dilations=dilations)
            return input_gradient, kernel_gradient(
                inputs, output_gradient, kernel.shape, padding,
                dilations[1:3])

        return outputs, gradient

    # As tensors: a variable read inside would make custom_gradient ask for
    # the variable's gradient separately (eager calls hand the kernel over
    # as a variable).
    return convolution(tf.convert_to_tensor(inputs),
                       tf.convert_to_tensor(kernel))


def _tap_ranges(size: int, output_size: int, taps: int, dilation: int,
                pad_before: int):
    """Per tap along one axis: (offset, first, end), the output positions
    [first, end) whose input position (output + offset) is inside the
    map; end <= first where none is."""
    ranges = []
    for tap in range(taps):
        offset = tap * dilation - pad_before
        ranges.append((offset, max(0, -offset),
                       min(output_size, size - offset)))
    return ranges


def kernel_gradient(inputs: tf.Tensor, output_gradient: tf.Tensor,
                    kernel_shape, padding: str = 'VALID',
                    dilations=(1, 1)) -> tf.Tensor:
    """The [kh, kw, C_in, C_out] kernel gradient of a stride-1 NHWC
    convolution with `padding` ('SAME' as TF pads it) and
    `dilations`. Height, width and channels must be static."""
    kernel_height, kernel_width, channels_in, channels_out = (
        int(size) for size in kernel_shape)
    _, height, width, _ = inputs.shape
    _, output_height, output_width, _ = output_gradient.shape
    pads = [0, 0]
    if padding == 'SAME':
        # Imported here: convolutions builds its layers from this module.
        # At stride 1, TF's SAME padding is DeepLab2's.
        from deeplab2.model.layers.convolutions import same_padding
        pads = [same_padding(taps, dilation)[0] for taps, dilation
                in zip((kernel_height, kernel_width), dilations)]
    rows = _tap_ranges(height, output_height, kernel_height, dilations[0],
                       pads[0])
    columns = _tap_ranges(width, output_width, kernel_width, dilations[1],
                          pads[1])
    zero = None
    taps = []
    for row_offset, row_first, row_end in rows:
        for column_offset, column_first, column_end in columns:
            if row_end <= row_first or column_end <= column_first:
                # The tap only ever reads padding.
                if zero is None:
                    zero = tf.zeros([channels_in, channels_out],
                                    output_gradient.dtype)
                taps.append(zero)
                continue
            region_inputs = inputs[:, row_first + row_offset:
                                   row_end + row_offset,
                                   column_first + column_offset:
                                   column_end + column_offset]
            region_gradient = output_gradient[:, row_first:row_end,
                                              column_first:column_end]
            taps.append(tf.matmul(
                tf.reshape(region_inputs, [-1, channels_in]),
                tf.reshape(region_gradient, [-1, channels_out]),
                transpose_a=True))
    return tf.reshape(tf.stack(taps), [kernel_height, kernel_width,
                                       channels_in, channels_out])
