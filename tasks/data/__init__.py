"""The data steps: pull what is new, validate it (pair filters, language ID, placeholders, normalization), and split
it around the frozen test set; replay data against forgetting."""
