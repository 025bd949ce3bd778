// The GraphQL client: queries and mutations over HTTP (fetch), the gift feed over WebSocket
// (graphql-transport-ws, with the vendored graphql-ws client).
//
// Mutations that move money carry an idempotency key made once per click. If the network
// fails or the API answers TRY_AGAIN, the same request is sent again with the same key:
// the API finishes it or returns its first answer, so a retry never buys or gifts twice.

export class ApiError extends Error {
  /** code: the GraphQL error's extensions.code, or NETWORK / HTTP_<status>. */
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

const RETRYABLE = new Set(["NETWORK", "TRY_AGAIN", "HTTP_429", "HTTP_502", "HTTP_503", "HTTP_504"]);
const BACKOFF_MS = [300, 800, 1600, 3200, 5000];

/** A fresh idempotency key: 1 to 64 of A-Z a-z 0-9 _ - : (works outside secure contexts too). */
export function newKey(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class Api {
  /**
   * config: {graphqlUrl, publicGraphqlUrl, giftFeedUrl?} (config.json).
   * getToken: async () => an ID token, or null when signed out.
   */
  constructor(config, getToken) {
    this.config = config;
    this.getToken = getToken;
    this.unsupported = new Set(); // documents this API rejected as unknown fields
    this.onRetry = () => {};
  }

  /** One HTTP request; returns `data` or throws ApiError. */
  async request(query, variables = {}) {
    const token = await this.getToken();
    const url = token ? this.config.graphqlUrl : this.config.publicGraphqlUrl;
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
    } catch {
      throw new ApiError("The server could not be reached.", "NETWORK");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // a gateway's HTML error page, a cut connection: handled by the status below
    }
    if (response.status === 401) throw new ApiError("Your sign-in has expired.", "UNAUTHENTICATED");
    if (!response.ok && !body?.data) {
      const message = body?.errors?.[0]?.message || `The server answered HTTP ${response.status}.`;
      throw new ApiError(message, `HTTP_${response.status}`);
    }
    if (body?.errors?.length) {
      const error = body.errors[0];
      throw new ApiError(error.message, error.extensions?.code || "GRAPHQL");
    }
    return body.data;
  }

  /**
   * A query. With `fallback`, an older document for an API that does not have every field
   * of `query` yet (e.g. earnings fields added later): used when `query` is refused.
   */
  async query(query, variables, { fallback } = {}) {
    if (fallback && this.unsupported.has(query)) return this.request(fallback, variables);
    try {
      return await this.request(query, variables);
    } catch (error) {
      if (!fallback || !/Cannot query field/.test(error.message)) throw error;
      this.unsupported.add(query);
      return this.request(fallback, variables);
    }
  }

  /**
   * A mutation, retried with the same variables (so the same idempotency key) on network
   * errors and TRY_AGAIN, with backoff. Returns `data`; throws ApiError when it gives up.
   */
  async mutate(mutation, variables) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request(mutation, variables);
      } catch (error) {
        if (!(error instanceof ApiError) || !RETRYABLE.has(error.code) || attempt >= BACKOFF_MS.length) {
          throw error;
        }
        this.onRetry(error, attempt + 1);
        await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS[attempt]));
      }
    }
  }

  /**
   * A subscription (the gift feed): onData(data) for each event, onEnd() when the server
   * completes it (the stream ended), onConnected() once the WebSocket is acknowledged.
   * Returns the function that unsubscribes.
   */
  subscribe(query, variables, { onData, onEnd, onError, onConnected = () => {} }) {
    if (!this.ws) {
      const url =
        this.config.giftFeedUrl || new URL(this.config.graphqlUrl, location.href).href.replace(/^http/, "ws");
      this.ws = globalThis.graphqlWs.createClient({
        url,
        lazy: true,
        retryAttempts: 5,
        // Optional on AWS (an ID token in connection_init); anonymous viewers need none.
        connectionParams: async () => {
          const token = await this.getToken();
          return token ? { Authorization: `Bearer ${token}` } : {};
        },
      });
    }
    const unlisten = this.ws.on("connected", onConnected);
    const unsubscribe = this.ws.subscribe(
      { query, variables },
      {
        next: (message) => (message.errors ? onError(message.errors[0]) : onData(message.data)),
        error: (error) => onError(error),
        complete: () => onEnd(),
      },
    );
    return () => {
      unlisten();
      unsubscribe();
    };
  }

  /** Close the feed connection, e.g. after signing out (its token may change). */
  reset() {
    this.ws?.dispose();
    this.ws = null;
  }
}
