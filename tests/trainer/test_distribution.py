"""MirroredStrategy over two logical CPUs trains like one device with the
same global batch (sync batch norm on).

Runs in a child process: splitting the CPU into logical devices must happen
before TensorFlow initializes them.
"""

import pathlib
import subprocess
import sys
import textwrap

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO_CONFIG = (REPO_ROOT / 'configs/demo/'
               'panoptic_deeplab_mobilenet_v3_small_os16.textproto')

# Every script starts by splitting the CPU into two logical devices.
_TWO_CPUS = textwrap.dedent('''
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
''')


def _run_on_two_cpus(script: str, *args) -> None:
    """Runs `script` (argv[1] = the demo config, then `args`) in a child
    process on two logical CPUs; fails with its output if it fails."""
    result = subprocess.run(
        [sys.executable, '-c', _TWO_CPUS + script, str(DEMO_CONFIG),
         *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, (result.stdout[-2000:] +
                                    result.stderr[-4000:])

_SCRIPT = textwrap.dedent('''
    import numpy as np
    import keras
    from deeplab2 import common, config as config_lib
    from deeplab2.data import datasets
    from deeplab2.loss import build_loss
    from deeplab2.model import builder
    from deeplab2.trainer import schedules, trainer as trainer_lib
    from deeplab2.model.decoder import aspp
    # ASPP dropout draws different masks per replica; off for this check.
    aspp._PROJECTION_DROPOUT = 0.0

    config = config_lib.load_config(sys.argv[1], [
        'model_options.backbone.backbone_width_multiplier=0.35',
        'trainer_options.solver_options.use_sync_batchnorm=true',
        'trainer_options.solver_options.optimizer=sgd',
        'trainer_options.solver_options.base_learning_rate=0.01'])
    rng = np.random.RandomState(0)
    labels = rng.choice([0, 1, 11, 13], size=[4, 33, 49]).astype(np.int32)
    batch = {
        common.IMAGE: rng.uniform(0, 255, [4, 33, 49, 3]).astype('float32'),
        common.GT_SEMANTIC_KEY: labels,
        common.GT_INSTANCE_CENTER_KEY: rng.uniform(0, 1, [4, 33, 49]).astype('float32'),
        common.GT_INSTANCE_REGRESSION_KEY: rng.normal(0, 5, [4, 33, 49, 2]).astype('float32'),
        common.SEMANTIC_LOSS_WEIGHT_KEY: np.ones([4, 33, 49], 'float32'),
        common.CENTER_LOSS_WEIGHT_KEY: np.ones([4, 33, 49], 'float32'),
        common.REGRESSION_LOSS_WEIGHT_KEY: np.ones([4, 33, 49], 'float32'),
    }

    def train(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = builder.build_model(config)
            optimizer = schedules.build_optimizer(
                config.trainer_options.solver_options)
        loss = build_loss(config, datasets.CITYSCAPES_PANOPTIC)
        trainer = trainer_lib.Trainer(strategy, model, loss, optimizer, 4)
        data = tf.data.Dataset.from_tensors(batch).repeat()
        iterator = iter(strategy.experimental_distribute_dataset(data))
        losses = trainer.train(iterator, 3)
        return losses, [v.numpy() for v in model.weights]

    one, one_weights = train(tf.distribute.OneDeviceStrategy('/cpu:0'))
    two, two_weights = train(tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights))
    print('losses', one['total_loss'], two['total_loss'])
    print('max weight difference', worst)
    assert abs(one['total_loss'] - two['total_loss']) < 1e-4 * abs(one['total_loss'])
    assert worst < 1e-4, worst
''')


def test_mirrored_two_replicas_equal_one_device():
    _run_on_two_cpus(_SCRIPT)


_EVAL_SCRIPT = textwrap.dedent('''
    import numpy as np
    import keras
    from deeplab2 import config as config_lib
    from deeplab2.data import datasets, demo, input_pipeline
    from deeplab2.model import builder, inference
    from deeplab2.trainer import evaluator as evaluator_lib

    shards = demo.materialize_demo_dataset(cache_dir=sys.argv[2],
                                           num_train=1, num_val=3)
    config = config_lib.load_config(sys.argv[1], [
        'model_options.backbone.backbone_width_multiplier=0.35',
        f'eval_dataset_options.file_pattern={shards}/val-*',
        'eval_dataset_options.batch_size=2',
        'evaluator_options.center_score_threshold=0.0'])

    def evaluate(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = builder.build_model(config)
        evaluator = evaluator_lib.Evaluator(
            strategy, inference.build_inference(config, model),
            datasets.DEMO)
        names = []
        dataset = input_pipeline.build_dataset(
            config.eval_dataset_options, is_training=False,
            field='eval_dataset_options')
        metrics = evaluator.evaluate(
            dataset, on_image=lambda name, *_: names.append(name))
        return metrics, names

    one, one_names = evaluate(tf.distribute.OneDeviceStrategy('/cpu:0'))
    two, two_names = evaluate(
        tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))
    # Three images in batches of 2: the last batch leaves a replica empty.
    assert sorted(one_names) == sorted(two_names) and len(set(one_names)) == 3
    for key in ('pq', 'pq_thing', 'pq_stuff', 'miou', 'ap', 'ap50'):
        print(key, one[key], two[key])
        assert abs(one[key] - two[key]) < 1e-6, key
    assert (one['confusion_matrix'] == two['confusion_matrix']).all()
    assert one['confusion_matrix'].sum() > 0
''')


def test_mirrored_eval_gathers_every_replica(tmp_path):
    _run_on_two_cpus(_EVAL_SCRIPT, str(tmp_path))


_RUNNER_SCRIPT = textwrap.dedent('''
    from deeplab2 import config as config_lib
    from deeplab2.data import demo
    from deeplab2.trainer import runner

    shards = demo.materialize_demo_dataset(cache_dir=sys.argv[2],
                                           num_train=2, num_val=1)
    config = config_lib.load_config(sys.argv[1], [
        f'train_dataset_options.file_pattern={shards}/train-*',
        f'eval_dataset_options.file_pattern={shards}/val-*',
        'train_dataset_options.crop_size=65,129',
        'train_dataset_options.batch_size=2',
        'model_options.backbone.backbone_width_multiplier=0.35',
        'trainer_options.solver_options.training_number_of_steps=2',
        'trainer_options.solver_options.warmup_steps=0',
        'trainer_options.steps_per_loop=1',
        'evaluator_options.eval_interval=2'])
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    model_dir = sys.argv[2] + '/model'
    metrics = runner.run(config, 'train_and_eval', model_dir,
                         strategy=strategy, seed=0)
    assert 'pq' in metrics
    # A rerun restores everything, the replicated noise generator included.
    runner.run(config, 'train', model_dir, strategy=strategy, seed=0)
''')


def test_runner_trains_with_dropout_on_two_replicas(tmp_path):
    """The runner under MirroredStrategy with ASPP dropout on: the training
    noise generator is replicated, checkpointed and restored."""
    _run_on_two_cpus(_RUNNER_SCRIPT, str(tmp_path))
