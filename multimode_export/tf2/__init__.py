"""Conversion: an export -> one object-based TF2 SavedModel (issue 23).

The way out of `tf.estimator`: the train, eval and serve graphs of an export
become functions of one TF2 SavedModel sharing one set of variables, which
TensorFlow 2.16+ and Keras 3 load without tags. Internal: the public API is
`multimode_export.convert_to_tf2`.
"""
