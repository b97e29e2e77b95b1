"""MLflow only: tracking, registration (the `register` stage), the promotion gate and alias moves."""
