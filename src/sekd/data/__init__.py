"""Data: the built-in corpus builder and the datasets that read corpora and paired folders."""
