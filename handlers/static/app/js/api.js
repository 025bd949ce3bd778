// The GraphQL client: queries and mutations over HTTP (fetch), the gift feed over WebSocket
// (graphql-transport-ws, with the vendored graphql-ws client).
//
// Mutations that move money carry an idempotency key made once per intent (`Intent`). If the
// network fails or the API answers TRY_AGAIN, the same request is sent again with the same
// key: the API finishes it or returns its first answer, so a retry never buys or gifts twice.
// When the app gives up, the outcome is unknown: the intent keeps its key, so the user's own
// second click on the same thing is still the same request.

export class ApiError extends Error {
  /** code: the GraphQL error's extensions.code, or NETWORK / HTTP_<status>. */
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

const RETRYABLE = new Set(["NETWORK", "TRY_AGAIN", "HTTP_429", "HTTP_502", "HTTP_503", "HTTP_504"]);
export const BACKOFF_MS = [300, 800, 1600, 3200, 5000];
// The gift feed reconnects for as long as the page is open, at most 10 s apart.
export const RECONNECT_MS = [500, 1000, 2000, 4000, 8000, 10000];

/** Whether a failed mutation may have happened anyway (its answer never came back). */
export const outcomeUnknown = (error) => RETRYABLE.has(error?.code);

/** A fresh idempotency key: 1 to 64 of A-Z a-z 0-9 _ - : (works outside secure contexts too). */
export function newKey(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * The idempotency key of what the user means to do (one form). The same input keeps its key
 * until an answer comes back (success or a user error: `settle`), so pressing the button again
 * after "could not be reached" repeats the request the server may already have done instead of
 * doing it twice. A different input, or a click after an answer, is a new intent and a new key.
 */
export class Intent {
  constructor(prefix) {
    this.prefix = prefix;
    this.pending = null;
  }

  key(input) {
    const same = JSON.stringify(input);
    if (this.pending?.input !== same) this.pending = { input: same, key: newKey(this.prefix) };
    return this.pending.key;
  }

  /** An answer arrived: the next click is a new intent. */
  settle() {
    this.pending = null;
  }
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
    this.onUnauthenticated = () => {}; // a token was sent and refused
  }

  /** One HTTP request; returns `data` or throws ApiError (an AbortError if `signal` fired). */
  async request(query, variables = {}, { signal } = {}) {
    const token = await this.getToken();
    const url = token ? this.config.graphqlUrl : this.config.publicGraphqlUrl;
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, { method: "POST", headers, body: JSON.stringify({ query, variables }), signal });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new ApiError("The server could not be reached.", "NETWORK");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // a gateway's HTML error page, a cut connection: handled by the status below
    }
    let error = null;
    if (response.status === 401) error = new ApiError("Your sign-in has expired.", "UNAUTHENTICATED");
    else if (!response.ok && !body?.data) {
      const message = body?.errors?.[0]?.message || `The server answered HTTP ${response.status}.`;
      error = new ApiError(message, `HTTP_${response.status}`);
    } else if (body?.errors?.length) {
      const first = body.errors[0];
      error = new ApiError(first.message, first.extensions?.code || "GRAPHQL");
    }
    if (error?.code === "UNAUTHENTICATED" && token) this.onUnauthenticated();
    if (error) throw error;
    return body.data;
  }

  /**
   * A query. With `fallback`, an older document for an API that does not have every field
   * of `query` yet (e.g. fields added by a later contract): used when `query` is refused.
   */
  async query(query, variables = {}, { fallback, signal } = {}) {
    if (fallback && this.unsupported.has(query)) return this.request(fallback, variables, { signal });
    try {
      return await this.request(query, variables, { signal });
    } catch (error) {
      if (!fallback || !/Cannot query field/.test(error.message)) throw error;
      this.unsupported.add(query);
      return this.request(fallback, variables, { signal });
    }
  }

  /**
   * A mutation, retried with the same variables (so the same idempotency key) on network
   * errors and TRY_AGAIN, with backoff; onRetry(error, attempt) before each wait. Returns
   * `data`; throws ApiError when it gives up. Never aborted: leaving the page does not
   * change what the server does, and the answer still settles the intent.
   */
  async mutate(mutation, variables, { onRetry = () => {} } = {}) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.request(mutation, variables);
      } catch (error) {
        if (!(error instanceof ApiError) || !outcomeUnknown(error) || attempt >= BACKOFF_MS.length) {
          throw error;
        }
        onRetry(error, attempt + 1);
        await new Promise((resolve) => setTimeout(resolve, BACKOFF_MS[attempt]));
      }
    }
  }

  /**
   * A subscription (the gift feed): onData(data) for each event, onEnd() when the server
   * completes it (the stream ended), onError(error) when it is refused, and
   * onSocket(state, retries) as the connection goes "connecting", "connected" (again after
   * each reconnection: the caller catches up on what it missed) or "closed" (retried for as
   * long as the subscription lives, RECONNECT_MS apart). Returns the function that unsubscribes.
   */
  subscribe(query, variables, { onData, onEnd, onError, onSocket = () => {} }) {
    if (!this.ws) {
      const url =
        this.config.giftFeedUrl || new URL(this.config.graphqlUrl, location.href).href.replace(/^http/, "ws");
      this.ws = globalThis.graphqlWs.createClient({
        url,
        lazy: true,
        // A dropped network or a restarted server is retried without end; a refusal (a bad
        // token, a bad document) is not (graphql-ws's default shouldRetry).
        retryAttempts: Infinity,
        retryWait: (retries) =>
          new Promise((resolve) => setTimeout(resolve, RECONNECT_MS[Math.min(retries, RECONNECT_MS.length - 1)])),
        // Optional on AWS (an ID token in connection_init); anonymous viewers need none.
        connectionParams: async () => {
          const token = await this.getToken();
          return token ? { Authorization: `Bearer ${token}` } : {};
        },
      });
    }
    let closes = 0; // since the last acknowledged connection
    const unlisten = [
      this.ws.on("connecting", () => onSocket("connecting", closes)),
      this.ws.on("connected", () => {
        closes = 0;
        onSocket("connected", 0);
      }),
      this.ws.on("closed", () => onSocket("closed", ++closes)),
    ];
    const unsubscribe = this.ws.subscribe(
      { query, variables },
      {
        next: (message) => (message.errors ? onError(message.errors[0]) : onData(message.data)),
        // a refusal: the server's GraphQL errors, or the close event that ended the socket
        error: (error) => onError(Array.isArray(error) ? error[0] : error),
        complete: () => onEnd(),
      },
    );
    return () => {
      for (const off of unlisten) off();
      unsubscribe();
    };
  }

  /** Close the feed connection, e.g. after signing out (its token may change). */
  reset() {
    this.ws?.dispose();
    this.ws = null;
  }
}
