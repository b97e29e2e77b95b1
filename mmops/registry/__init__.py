"""MLflow tracking, the raw-input pyfunc, registration and the promotion gate."""
