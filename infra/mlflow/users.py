"""Create the MLflow basic-auth users of infra/, one per client, or reset their passwords (idempotent).

    python infra/mlflow/users.py mmops-pipeline,mmops-serve

Runs as the admin (MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME/PASSWORD). The password of user
`mmops-serve` comes from env MLFLOW_PASSWORD_MMOPS_SERVE (name upper-cased, `-` as `_`): no
password is ever an argument or printed. What each user may do follows the server's
`default_permission` (infra/mlflow/basic_auth.ini: READ) plus MANAGE on what it creates.
"""

from __future__ import annotations

import os
import sys

from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client


def password_env(user: str) -> str:
    return "MLFLOW_PASSWORD_" + user.upper().replace("-", "_")


def ensure_users(users: list[str]) -> None:
    client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    for user in users:
        password = os.environ.get(password_env(user))
        if not password:
            sys.exit(f"refusing: {password_env(user)} (the password of {user}) is not set")
        try:
            client.create_user(user, password)
            print(f"created MLflow user {user}")
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.update_user_password(user, password)
            print(f"MLflow user {user} exists; password set from {password_env(user)}")


if __name__ == "__main__":
    ensure_users([u for arg in sys.argv[1:] for u in arg.split(",") if u])
