// The live feed (WS /logs) with reconnection: a server restart or a dropped network is normal, so
// the socket is reopened with exponential backoff (jittered, capped) and the page says
// "reconnecting…" meanwhile. A replay feed that the server closes normally is finished, not lost.

export const BACKOFF_FIRST_MS = 500;
export const BACKOFF_MAX_MS = 10000;

export function feedUrl(params = {}) {
  const target = new URL("/logs", window.location.href);
  target.protocol = target.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(key, value);
  }
  return target.href;
}

/** Delay before reconnect attempt `attempt` (0-based): doubling, capped, ±25 % jitter. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  return Math.round(base * (0.75 + 0.5 * random()));
}

export class Feed {
  /**
   * @param {object} options
   * @param {object} [options.params] query parameters of /logs (call_id, replay, speed)
   * @param {(message: object) => void} options.onMessage every JSON message
   * @param {(status: {state: string, inMs?: number, attempt?: number}) => void} [options.onStatus]
   * @param {boolean} [options.finishOnNormalClose] a 1000 close ends the feed (replays)
   */
  constructor({ params = {}, onMessage, onStatus = () => {}, finishOnNormalClose = false }) {
    this.params = params;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.finishOnNormalClose = finishOnNormalClose;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
    return this;
  }

  connect() {
    clearTimeout(this.timer);
    this.onStatus({ state: this.attempt === 0 ? "connecting" : "reconnecting", attempt: this.attempt });
    const socket = new WebSocket(feedUrl(this.params));
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.onStatus({ state: "open" });
    });
    socket.addEventListener("message", (event) => {
      if (socket !== this.socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // the feed only sends JSON; anything else is ignored
      }
      if (message && typeof message === "object") this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (this.finishOnNormalClose && event.code === 1000) {
        this.stopped = true;
        this.onStatus({ state: "finished" });
        return;
      }
      if (event.code >= 4000 && event.code < 5000) {
        // the server refused this request (bad speed, unknown call): retrying would not help
        this.stopped = true;
        this.onStatus({ state: "refused", reason: event.reason || `closed with code ${event.code}` });
        return;
      }
      const inMs = backoffDelay(this.attempt);
      this.attempt += 1;
      this.onStatus({ state: "reconnecting", inMs, attempt: this.attempt });
      this.timer = setTimeout(() => this.connect(), inMs);
    });
  }

  /** Send one JSON message; false when the socket is not open (the caller says so). */
  send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  get open() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "console closed the feed");
  }
}

/** A human label for a feed status. */
export function statusText(status) {
  switch (status.state) {
    case "open":
      return "live";
    case "connecting":
      return "connecting…";
    case "reconnecting":
      return status.inMs ? `reconnecting… (next try in ${Math.ceil(status.inMs / 1000)} s)` : "reconnecting…";
    case "finished":
      return "replay finished";
    case "refused":
      return `refused: ${status.reason}`;
    default:
      return status.state;
  }
}
