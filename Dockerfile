# The dispatcher as a container image: pinned dependencies from the lock file, non-root user.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY gateways ./gateways
COPY rules ./rules
COPY server ./server
COPY simulations ./simulations
RUN pip install --no-cache-dir --no-deps . && useradd --system --home /app dispatcher
USER dispatcher
EXPOSE 8000
CMD ["dispatcher", "serve", "--host", "0.0.0.0", "--port", "8000"]
