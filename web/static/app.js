// The console's entry point: one live feed for the whole page (so transcripts keep growing while
// you look at history), a hash router over the views, and the feed status in the header.

import { getJSON } from "./api.js";
import { mountAgent, mountAgents } from "./agents_view.js";
import { mountRouting } from "./routing_view.js";
import { clear } from "./dom.js";
import { Feed, statusText } from "./feed.js";
import { mountCall } from "./call_view.js";
import { mountHistory } from "./history_view.js";
import { LiveState } from "./live_state.js";
import { mountLive, mountReplay } from "./live_view.js";
import { mountSession } from "./session_view.js";
import { mountSetup } from "./setup_view.js";
import { mountTests } from "./tests_view.js";
import { mountWebhooks } from "./webhooks_view.js";

const main = document.getElementById("main");
const feedStatus = document.getElementById("feed-status");
const state = new LiveState();
const selection = { callId: null, wanted: null, pinned: false };

function refreshLiveCalls() {
  getJSON("/api/calls/live")
    .then((calls) => state.setLiveCalls(calls))
    .catch(() => {}); // the hello carries the same list; this only speeds the first paint up
}

const feed = new Feed({
  onMessage: (message) => state.apply(message),
  onStatus: (status) => {
    feedStatus.textContent = statusText(status);
    feedStatus.dataset.state = status.state;
    // a feed that keeps failing may mean the session ended: the API redirects to sign-in on 401
    if (status.state === "reconnecting" && status.attempt >= 2) refreshLiveCalls();
  },
});

const ROUTES = [
  [/^\/live$/, () => mountLive(main, { state, feed, selection })],
  [/^\/replay\/([^/]+)$/, (m, params) => mountReplay(main, { callId: decodeURIComponent(m[1]), speed: Number(params.get("speed") || 1) })],
  [/^\/history$/, (m, params) => mountHistory(main, params)],
  [/^\/agents$/, (m, params) => mountAgents(main, params)],
  [/^\/agents\/([^/]+)$/, (m, params) => mountAgent(main, decodeURIComponent(m[1]), params)],
  [/^\/routing$/, () => mountRouting(main)],
  [/^\/calls\/([^/]+)$/, (m) => mountCall(main, decodeURIComponent(m[1]))],
  [/^\/session$/, (m, params) => mountSession(main, params)],
  [/^\/setup$/, () => mountSetup(main)],
  [/^\/webhooks$/, () => mountWebhooks(main)],
  [/^\/tests$/, (m, params) => mountTests(main, params)],
];

let current = null;
let routedOnce = false;

function route() {
  const hash = window.location.hash.replace(/^#/, "") || "/live";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const found = ROUTES.map(([pattern, mount]) => [pattern.exec(path), mount]).find(([match]) => match);
  if (!found) {
    window.location.replace("#/live");
    return;
  }
  current?.unmount?.();
  clear(main);
  const [match, mount] = found;
  current = mount(match, params);
  const section = path.split("/")[1];
  for (const link of document.querySelectorAll("[data-nav]")) {
    const active = link.dataset.nav === section || (section === "replay" && link.dataset.nav === "live") || (section === "calls" && link.dataset.nav === "history") || (section === "routing" && link.dataset.nav === "agents");
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${section.charAt(0).toUpperCase()}${section.slice(1)} · callbridge`;
  if (routedOnce) main.focus({ preventScroll: true }); // keyboard and screen-reader users land on the new view
  routedOnce = true;
  window.scrollTo(0, 0);
}

window.addEventListener("hashchange", route);
feed.start();
refreshLiveCalls();
route();
