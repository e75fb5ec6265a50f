# One image for every service; docker-compose.yml picks the command (python -m gateway | scorer | uploader |
# scheduler | sandbox). .dockerignore lets in only what the image needs.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home metrika \
    && mkdir -p /tmp/metrika-score && chown metrika /tmp/metrika-score
USER metrika
ENV MODELS_DIR=/app/models PYTHONUNBUFFERED=1 WORK_DIR=/tmp/metrika-score
CMD ["python", "-m", "gateway"]
