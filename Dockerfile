# meshlet sidecar image: build the TypeScript once, ship only runtime dependencies and dist/.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund && npm run build

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
# jemalloc: `meshlet run` preloads it into the daemon when present (README "Memory and GC"): after
# load it keeps RSS ~15-20 MiB below glibc malloc. MESHLET_MALLOC=glibc opts out.
RUN apt-get update && apt-get install -y --no-install-recommends libjemalloc2 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY protos ./protos
# `meshlet` on PATH: an image built FROM this one can run its app under meshlet with
# ENTRYPOINT ["meshlet", "run", "--config", "/etc/meshlet/meshlet.yaml", "--"] and the app as CMD
# (README "Running the app under meshlet"); with this image's own ENTRYPOINT, give
# CMD ["run", "--config", "/etc/meshlet/meshlet.yaml", "--", "node", "/app/server.js"].
RUN chmod +x bin/meshlet.js && ln -s /app/bin/meshlet.js /usr/local/bin/meshlet
USER node
# outbound (app → meshlet), admin (health, metrics), inbound (peers, mTLS); the gRPC admin API
# (15002) listens on 127.0.0.1 by default and is not exposed.
EXPOSE 15001 15000 15443
HEALTHCHECK --interval=10s --timeout=2s CMD node -e "fetch('http://127.0.0.1:15000/live').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# `meshlet run` re-executes itself as the daemon alone with --max-semi-space-size=2 (README "Memory and GC").
ENTRYPOINT ["node", "bin/meshlet.js"]
CMD ["run", "--config", "/etc/meshlet/meshlet.yaml"]
