"""The sample app the deploy tests and the benchmarks push: a FastAPI app
built from a Dockerfile, with a release command (prestart.sh) that leaves a
mark in its data volume. Each user adds its own main.py."""

DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port $PORT"]
"""

REQUIREMENTS = "fastapi>=0.110,<1\nuvicorn>=0.29,<1\n"

PRESTART = """\
#!/bin/sh
set -e
echo "prestart ran for {version}" > /data/mark
echo "prestart: wrote the mark for {version}"
"""
