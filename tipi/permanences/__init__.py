"""tipi's built-in permanences: device, progress, logger, data, network, hyperparameters."""
