# parley gateway image: small (python slim, no compilers in the final stage), runs as a non-root
# user, and reports health through /health/readiness. See docs/deploy.md.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/parley \
 && /opt/parley/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/parley/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/parley /opt/parley
RUN useradd --system --uid 10001 --home-dir /var/lib/parley --create-home parley
ENV PATH=/opt/parley/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/parley
USER parley
EXPOSE 4000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:4000/health/readiness', timeout=2); sys.exit(0)"]
# The config is mounted at /etc/parley/config.yaml; secrets come from the environment.
CMD ["parley", "--config", "/etc/parley/config.yaml", "--host", "0.0.0.0", "--port", "4000"]
