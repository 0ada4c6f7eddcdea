"""Names shared across stages: tensor dict keys, TFRecord feature keys and
checkpoint item names.

The values are DeepLab2's, so dicts, TFRecords and checkpoints written by
either implementation are read by the other. Use these constants; never
spell a key as a string literal elsewhere.
"""

# Network outputs (all upsampled to the input size).
PRED_SEMANTIC_LOGITS_KEY = 'semantic_logits'
PRED_SEMANTIC_PROBS_KEY = 'semantic_probs'
PRED_CENTER_HEATMAP_KEY = 'center_heatmap'
PRED_OFFSET_MAP_KEY = 'offset_map'

# Post-processed predictions.
PRED_SEMANTIC_KEY = 'semantic_pred'
PRED_INSTANCE_KEY = 'instance_pred'
PRED_PANOPTIC_KEY = 'panoptic_pred'
PRED_INSTANCE_CENTER_KEY = 'instance_center_pred'
PRED_INSTANCE_SCORES_KEY = 'instance_scores'
PRED_SEMANTIC_SCORES_KEY = 'semantic_scores'

# Training targets and their per-pixel loss weights.
GT_SEMANTIC_KEY = 'semantic_gt'
GT_PANOPTIC_KEY = 'panoptic_gt'
GT_INSTANCE_CENTER_KEY = 'instance_center_gt'
GT_INSTANCE_REGRESSION_KEY = 'instance_regression_gt'
GT_IS_CROWD = 'is_crowd_gt'
SEMANTIC_LOSS_WEIGHT_KEY = 'semantic_loss_weight'
CENTER_LOSS_WEIGHT_KEY = 'center_loss_weight'
REGRESSION_LOSS_WEIGHT_KEY = 'regression_loss_weight'

# Labels at the original image size, kept for evaluation.
GT_PANOPTIC_RAW = 'panoptic_raw'
GT_SEMANTIC_RAW = 'semantic_raw'
GT_IS_CROWD_RAW = 'is_crowd_raw'
GT_SIZE_RAW = 'size_raw'

# Loss terms, as returned by the loss and written to summaries.
SEMANTIC_LOSS = 'semantic_loss'
CENTER_LOSS = 'center_loss'
REGRESSION_LOSS = 'regression_loss'
TOTAL_LOSS = 'total_loss'

# Inputs.
IMAGE = 'image'
RESIZED_IMAGE = 'resized_image'
IMAGE_NAME = 'image_name'

# tf.train.Example feature keys.
KEY_ENCODED_IMAGE = 'image/encoded'
KEY_IMAGE_FILENAME = 'image/filename'
KEY_IMAGE_FORMAT = 'image/format'
KEY_IMAGE_HEIGHT = 'image/height'
KEY_IMAGE_WIDTH = 'image/width'
KEY_IMAGE_CHANNELS = 'image/channels'
KEY_ENCODED_LABEL = 'image/segmentation/class/encoded'
KEY_LABEL_FORMAT = 'image/segmentation/class/format'

# Checkpoint items: the model exposes its parts under these names, which is
# how DeepLab2 checkpoints address them.
CKPT_SEMANTIC_DECODER = 'semantic_decoder'
CKPT_SEMANTIC_HEAD_WITHOUT_LAST_LAYER = 'semantic_head_without_last_layer'
CKPT_SEMANTIC_LAST_LAYER = 'semantic_last_layer'
CKPT_INSTANCE_DECODER = 'instance_decoder'
CKPT_INSTANCE_CENTER_HEAD_WITHOUT_LAST_LAYER = (
    'instance_center_head_without_last_layer')
CKPT_INSTANCE_CENTER_HEAD_LAST_LAYER = 'instance_center_head_last_layer'
CKPT_INSTANCE_REGRESSION_HEAD_WITHOUT_LAST_LAYER = (
    'instance_regression_head_without_last_layer')
CKPT_INSTANCE_REGRESSION_HEAD_LAST_LAYER = (
    'instance_regression_head_last_layer')
