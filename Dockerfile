# The worker image: the package, its schemas and its models. One process per container;
# scale with partitions and replicas of this container.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workers ./workers
RUN pip install --no-cache-dir .
COPY schemas ./schemas
COPY models ./models
ENV WORKERS_SCHEMAS_DIR=/app/schemas \
    WORKERS_MODELS_DIR=/app/models \
    WORKERS_TRUSTED_KEYS=/app/models/trusted-keys/reference-test.pub.pem \
    WORKERS_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER nobody
ENTRYPOINT ["workers"]
CMD ["run"]
