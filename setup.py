"""Packaging for multimode_export. Does not import TensorFlow."""

import re

import setuptools

with open('multimode_export/__init__.py', encoding='utf-8') as f:
  VERSION = re.search(r"^__version__ = '([^']+)'", f.read(), re.M).group(1)
with open('README.md', encoding='utf-8') as f:
  LONG_DESCRIPTION = f.read()

# TensorFlow itself is an extra: `tensorflow` and `tensorflow-cpu` both
# provide the module, and requiring one would install it next to the other.
TF_RANGE = '>=2.13,<2.16'

setuptools.setup(
    name='multimode-export',
    version=VERSION,
    description=('Export the train, eval and serve graphs of a '
                 'tf.estimator model as one SavedModel.'),
    long_description=LONG_DESCRIPTION,
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['multimode_export', 'multimode_export.*']),
    py_modules=['multimode_export_cli'],
    package_data={'multimode_export': ['py.typed']},
    python_requires='>=3.9,<3.12',
    install_requires=[
        'absl-py>=1.0',
        # Hardware crc32c for bundle copies and `verify` (Apache-2.0).
        'google-crc32c>=1.5',
        f'tensorflow-estimator{TF_RANGE}',
        'numpy',
    ],
    extras_require={
        'cpu': [f'tensorflow-cpu{TF_RANGE}'],
        'gpu': [f'tensorflow{TF_RANGE}'],
        # s3:// and gs:// through tensorflow-io's filesystems; 0.36.0 is the
        # release built for TF 2.15 (see docs/object-stores.md).
        'object-stores': ['tensorflow-io==0.36.0'],
        # The S3 and GCS servers tests/object_store_test.py runs on 127.0.0.1.
        'test': ['pytest', 'pytest-xdist', 'hypothesis', 'moto[server]',
                 'gcp-storage-emulator'],
        # benchmarks/ only: the plots.
        'bench': ['matplotlib'],
    },
    entry_points={
        'console_scripts': ['multimode-export=multimode_export_cli:run'],
    },
    classifiers=[
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'License :: OSI Approved :: Apache Software License',
    ],
)
