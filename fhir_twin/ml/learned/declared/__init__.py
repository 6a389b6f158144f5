"""What the catalog and the command line need to know of each learned model without loading it: its
``MODEL``, its ``GATES`` and, for a model that runs on patients, the Body fields it ``READS`` and those a
``$whatif`` may change. The models themselves (``learned.forecast``, ...) import numpy, pandas and
scikit-learn, and load only where a model is trained, evaluated or run: a server with no learned model
active never holds them (about 130 MB a process).
"""
