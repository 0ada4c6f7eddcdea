"""What `deeplab2.trainer.train --mode` can run (`runner.run` does it):

  train            train to training_number_of_steps
  eval             evaluate the latest checkpoint once
  train_and_eval   train, evaluating every eval_interval steps (0: never
                   before) and at the end
  continuous_eval  evaluate each new checkpoint until none arrives for
                   continuous_eval_timeout seconds

A module of its own, free of TensorFlow, so that the CLI defines its
`--mode` flag from this one list and still answers --help at once.
"""

MODES = ('train', 'eval', 'train_and_eval', 'continuous_eval')
