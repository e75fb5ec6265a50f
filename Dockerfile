# One image for every service; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY gateway gateway
COPY scorer scorer
COPY uploader uploader
COPY sandbox sandbox
COPY models models
RUN pip install --no-cache-dir .
ENV MODELS_DIR=/app/models PYTHONUNBUFFERED=1
CMD ["python", "-m", "gateway"]
