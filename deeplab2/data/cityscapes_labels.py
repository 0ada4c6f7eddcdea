"""Cityscapes' label space as DeepLab2 trains on it: 19 train ids, void 255,
panoptic ids `train_id * 1000 + instance`, things = train ids 11-18.

Plain constants (no NumPy, no TensorFlow): the dataset descriptor, the
metrics' tests and the converter's workers all read them.
"""

NUM_CLASSES = 19
IGNORE_LABEL = 255
LABEL_DIVISOR = 1000
THING_CLASSES = frozenset(range(11, 19))
# Train id -> class name (cityscapesscripts' names; a test checks them).
CLASS_NAMES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
               'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky',
               'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
               'bicycle')
# Train id -> Cityscapes label id, what the official evaluators and the
# benchmark server read (cityscapesscripts' table; a test checks them).
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31,
             32, 33)
# Label id of void ('unlabeled').
VOID_LABEL_ID = 0

