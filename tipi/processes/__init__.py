"""tipi's built-in processes: data loading, training, validation, test, results."""
