# sendit on the official Airflow image: our package and its locked dependencies.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:0 pyproject.toml uv.lock README.md /opt/sendit/
COPY --chown=airflow:0 sendit_ops /opt/sendit/sendit_ops
# development tools (the DASHER dev server of `docker compose --profile dev`): not installed,
# run from /opt/sendit
COPY --chown=airflow:0 devtools /opt/sendit/devtools
RUN pip install --no-cache-dir uv==0.13.9 \
 && cd /opt/sendit \
 && uv export --frozen --no-dev --no-emit-project --no-hashes -o /tmp/requirements.txt \
 && uv pip install --python "$(which python)" --no-cache -r /tmp/requirements.txt \
 && uv pip install --python "$(which python)" --no-cache --no-deps /opt/sendit
