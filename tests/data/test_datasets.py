"""Dataset descriptors hold DeepLab2's values for each dataset."""

import pytest

from deeplab2.data import datasets


def test_cityscapes_panoptic():
    d = datasets.get_dataset_descriptor('cityscapes_panoptic')
    assert d.num_classes == 19
    assert d.ignore_label == 255
    assert d.panoptic_label_divisor == 1000
    assert d.thing_class_ids == (11, 12, 13, 14, 15, 16, 17, 18)
    assert d.stuff_class_ids == tuple(range(11))
    assert d.splits_to_sizes['train_fine'] == 2975
    assert d.splits_to_sizes['val_fine'] == 500
    assert d.colormap == 'cityscapes'


def test_coco_panoptic():
    d = datasets.get_dataset_descriptor('coco_panoptic')
    assert d.num_classes == 134
    assert d.ignore_label == 0
    assert d.panoptic_label_divisor == 256
    assert d.thing_class_ids == tuple(range(1, 81))
    # 53 stuff categories; label 0 is void, neither thing nor stuff.
    assert d.stuff_class_ids == tuple(range(81, 134))
    assert d.splits_to_sizes == {'train': 118287, 'val': 5000, 'test': 40670}
    assert d.colormap == 'coco'


def test_demo_shares_cityscapes_label_space():
    demo = datasets.get_dataset_descriptor('demo')
    city = datasets.CITYSCAPES_PANOPTIC
    assert (demo.num_classes, demo.ignore_label, demo.panoptic_label_divisor,
            demo.thing_class_ids) == (19, 255, 1000, city.thing_class_ids)
    assert demo.splits_to_sizes == {'train': 64, 'val': 16}


def test_cityscapes_thing_ids_agree_with_cityscapesscripts():
    """An independent source: cityscapesscripts' label table."""
    from cityscapesscripts.helpers import labels as cs_labels
    things = sorted({label.trainId for label in cs_labels.labels
                     if label.hasInstances and not label.ignoreInEval})
    assert tuple(things) == datasets.CITYSCAPES_PANOPTIC.thing_class_ids
    train_ids = {label.trainId for label in cs_labels.labels
                 if not label.ignoreInEval}
    assert len(train_ids) == datasets.CITYSCAPES_PANOPTIC.num_classes


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError) as error:
        datasets.get_dataset_descriptor('cityscapes')
    assert str(error.value) == (
        "Unknown dataset 'cityscapes' (DatasetOptions.dataset). Known "
        'datasets: cityscapes_panoptic, coco_panoptic, demo.')


def test_descriptors_are_immutable():
    with pytest.raises(AttributeError):
        datasets.CITYSCAPES_PANOPTIC.num_classes = 20


def test_class_names_one_per_label():
    """Cityscapes' names are cityscapesscripts' (by train id); COCO's come
    from its category table, label 0 being void."""
    from cityscapesscripts.helpers import labels as cs_labels
    names = {label.trainId: label.name for label in cs_labels.labels
             if 0 <= label.trainId < 255}
    city = datasets.CITYSCAPES_PANOPTIC
    assert city.class_names == tuple(names[i] for i in range(19))
    assert datasets.DEMO.class_names == city.class_names
    coco = datasets.COCO_PANOPTIC
    assert len(coco.class_names) == coco.num_classes
    assert (coco.class_names[0], coco.class_names[1],
            coco.class_names[133]) == ('void', 'person', 'rug-merged')


def test_eval_ids_agree_with_cityscapesscripts_and_coco():
    """Train id -> label id from cityscapesscripts' table (independent of
    ours); COCO labels -> category ids with void 0."""
    from cityscapesscripts.helpers import labels as cs_labels
    label_ids = {label.trainId: label.id for label in cs_labels.labels
                 if 0 <= label.trainId < 255}
    city = datasets.CITYSCAPES_PANOPTIC
    assert city.eval_ids == tuple(label_ids[i] for i in range(19))
    assert cs_labels.id2label[city.eval_void_id].name == 'unlabeled'
    assert datasets.DEMO.eval_ids == city.eval_ids
    coco = datasets.COCO_PANOPTIC
    assert len(coco.eval_ids) == coco.num_classes
    # person is category 1, rug-merged (the last) 200; void stays 0.
    assert (coco.eval_ids[0], coco.eval_ids[1], coco.eval_ids[133]) == (
        0, 1, 200)
