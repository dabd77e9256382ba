# syntax=docker/dockerfile:1
# Build stage: install everything, compile what ships (tsconfig.build.json: app, workers, lib, cli, loadtest, client/src),
# then drop dev dependencies. test/ and bench/ are never copied in, so they cannot reach the image.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY app ./app
COPY workers ./workers
COPY lib ./lib
COPY cli ./cli
COPY loadtest ./loadtest
COPY client ./client
COPY db ./db
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: compiled output and production dependencies only, running as the unprivileged `node` user.
FROM node:22-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist ./dist
COPY --from=build --chown=node:node /app/bin ./bin
USER node
EXPOSE 8080 9464 9465
ENTRYPOINT ["node", "bin/floodgate.js"]
CMD ["start"]
