// Who is signed in, and their ID token.
//
// Locally: a picker of demo users whose dev tokens come from the local server's /dev/tokens
// (it exists there only). On AWS: SRP sign-in to the stack's Cognito user pool with the
// vendored amazon-cognito-identity-js, loaded only then. Either way the API gets an ID token
// (it carries the birthdate and name claims; an access token does not).
//
// Kept in localStorage and shared by every tab of the browser, as users expect: signing in or
// out in one tab does it in all (the `storage` event). To be two users at once, use two
// browsers or a private window.

const KEY = "livecoins.user";

export class Session {
  constructor(config) {
    this.config = config;
    this.user = JSON.parse(localStorage.getItem(KEY) || "null");
    this.listeners = [];
    window.addEventListener("storage", (event) => {
      if (event.key !== KEY && event.key !== null) return;
      this.user = JSON.parse(localStorage.getItem(KEY) || "null");
      for (const listener of this.listeners) listener(this.user);
    });
  }

  get cognito() {
    return this.config.mode === "cognito";
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  set(user) {
    this.user = user;
    if (user) localStorage.setItem(KEY, JSON.stringify(user));
    else localStorage.removeItem(KEY);
    for (const listener of this.listeners) listener(user);
  }

  /** The ID token for the API, or null. Cognito's is refreshed when it has expired. */
  async token() {
    if (!this.user) return null;
    if (!this.cognito) return this.user.token;
    const cognitoUser = (await this.pool()).getCurrentUser();
    if (!cognitoUser) return null;
    return new Promise((resolve) =>
      cognitoUser.getSession((error, session) => resolve(error ? null : session.getIdToken().getJwtToken())),
    );
  }

  /** Local demo users, each {sub, name, role, admin, token}. */
  async demoUsers() {
    const response = await fetch(this.config.devTokensUrl);
    if (!response.ok) throw new Error(`The dev token picker answered HTTP ${response.status}.`);
    return (await response.json()).users;
  }

  signInAs(demoUser) {
    const { sub, name, role, admin, token } = demoUser;
    this.set({ sub, name, role, admin, token });
  }

  async pool() {
    if (!globalThis.AmazonCognitoIdentity) await loadScript("vendor/amazon-cognito-identity.min.js");
    this.userPool ||= new AmazonCognitoIdentity.CognitoUserPool({
      UserPoolId: this.config.userPoolId,
      ClientId: this.config.userPoolClientId,
      Storage: localStorage,
      ...(this.config.cognitoEndpoint ? { endpoint: this.config.cognitoEndpoint } : {}),
    });
    return this.userPool;
  }

  /** SRP sign-in (USER_SRP_AUTH: the password never leaves the browser). */
  async signInWithPassword(email, password) {
    const pool = await this.pool();
    const cognitoUser = new AmazonCognitoIdentity.CognitoUser({ Username: email, Pool: pool, Storage: localStorage });
    const details = new AmazonCognitoIdentity.AuthenticationDetails({ Username: email, Password: password });
    const session = await new Promise((resolve, reject) =>
      cognitoUser.authenticateUser(details, {
        onSuccess: resolve,
        onFailure: reject,
        newPasswordRequired: () => reject(new Error("This account must set a new password first.")),
      }),
    );
    const claims = session.getIdToken().payload;
    const admin = (claims["cognito:groups"] || []).includes("admin");
    this.set({ sub: claims.sub, name: claims.name || email, role: admin ? "admin" : "", admin });
  }

  async signOut() {
    if (this.cognito && this.userPool) this.userPool.getCurrentUser()?.signOut();
    this.set(null);
  }
}

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`Could not load ${src}.`));
    document.head.append(script);
  });
}
