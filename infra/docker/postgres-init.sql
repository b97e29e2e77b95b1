-- Runs once, when the postgres service initialises its volume. POSTGRES_DB creates the MLflow
-- database; the Prefect server gets its own, owned by the same role (POSTGRES_USER).
CREATE DATABASE prefect;
