"""Reading and writing: run artifacts on a disk or S3 (storage), parallel-data formats and their readers, and the
pipeline's own files of pairs."""
