"""Training: fit a Keras model on a stored dataset and log the run (and its model) to MLflow."""
