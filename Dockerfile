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
    PYTHONUNBUFFERED=1
USER nobody
ENTRYPOINT ["workers"]
CMD ["run"]
