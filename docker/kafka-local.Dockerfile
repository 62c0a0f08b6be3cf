# The secure broker of docker-compose.secure.yml: the same scripts/kafka-local --secure that the
# tests run without Docker (TLS, SASL/SCRAM-SHA-512, ACLs), with the jars of the official image.
FROM apache/kafka:4.1.0 AS kafka

FROM eclipse-temurin:21-jre
RUN apt-get update && apt-get install -y --no-install-recommends python3 openssl \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/kafka-local && chown 1000:1000 /var/lib/kafka-local
COPY --from=kafka /opt/kafka/libs /opt/kafka/libs
COPY scripts/kafka-local /usr/local/bin/kafka-local
ENV KAFKA_LOCAL_LIBS=/opt/kafka/libs
# Certificates, SCRAM passwords and each user's client settings are made here at the first
# start; the compose file shares this volume (read-only) with the client containers.
VOLUME /var/lib/kafka-local
USER 1000
EXPOSE 9092
ENTRYPOINT ["python3", "/usr/local/bin/kafka-local"]
CMD ["start", "--secure", "--port", "9092", "--advertise-host", "kafka", "--foreground", \
     "--data-dir", "/var/lib/kafka-local"]
