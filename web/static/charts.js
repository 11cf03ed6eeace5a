// SVG drawings: the call timeline (lanes on one time axis, with a playhead that follows the
// recording) and small bar charts. Sized in CSS pixels of their container (redrawn on resize) so
// text stays readable at phone width; colours come from CSS classes, so dark mode just works.

import { h, s } from "./dom.js";

const LANES = [
  ["caller", "Caller"],
  ["assistant", "Assistant"],
  ["tool", "Tools"],
  ["marks", "Events"],
];
const TICK_STEPS_MS = [100, 250, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 1800000];

function niceStep(span, maxTicks) {
  return TICK_STEPS_MS.find((step) => span / step <= maxTicks) || TICK_STEPS_MS[TICK_STEPS_MS.length - 1];
}

function tickLabel(ms, step) {
  if (ms >= 60000) return `${Math.floor(ms / 60000)}:${String(Math.round((ms % 60000) / 1000)).padStart(2, "0")}`;
  return step < 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** Redraw `draw(width)` into `host` now and whenever the host's width changes. */
export function responsive(host, draw) {
  let last = 0;
  const render = () => {
    const width = Math.max(300, Math.floor(host.clientWidth || 600));
    if (width === last) return;
    last = width;
    host.replaceChildren(draw(width));
  };
  const observer = new ResizeObserver(render);
  observer.observe(host);
  render();
  return () => observer.disconnect();
}

/**
 * The timeline as SVG. `onSeek(ms)` is called when a lane is clicked; the returned
 * `setPlayhead(ms)` moves the playhead line (the recording's current time).
 */
export function timelineSvg(timeline, width, { onSeek } = {}) {
  const left = 78;
  const right = 12;
  const laneHeight = 30;
  const top = 8;
  const axis = 22;
  const height = top + LANES.length * laneHeight + axis;
  const plot = width - left - right;
  const x = (ms) => left + (Math.max(0, ms) / timeline.durationMs) * plot;
  const laneY = (lane) => top + LANES.findIndex(([id]) => id === lane) * laneHeight;

  const svg = s("svg", {
    class: "timeline",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `Call timeline, ${(timeline.durationMs / 1000).toFixed(1)} seconds: ${timeline.spans.length} speech and tool spans, ${timeline.marks.length} events`,
  });
  for (const [id, label] of LANES) {
    const y = laneY(id);
    svg.append(
      s("rect", { class: `lane-bg lane-${id}`, x: left, y, width: plot, height: laneHeight - 4 }),
      s("text", { class: "lane-label", x: left - 8, y: y + laneHeight / 2, "text-anchor": "end", "dominant-baseline": "middle" }, label),
    );
  }
  const step = niceStep(timeline.durationMs, Math.max(2, Math.floor(plot / 70)));
  const axisY = top + LANES.length * laneHeight;
  for (let t = 0; t <= timeline.durationMs + 1; t += step) {
    svg.append(
      s("line", { class: "tick", x1: x(t), x2: x(t), y1: top, y2: axisY }),
      s("text", { class: "tick-label", x: x(t), y: axisY + 14, "text-anchor": "middle" }, tickLabel(t, step)),
    );
  }
  for (const span of timeline.spans) {
    const y = laneY(span.lane) + 4;
    const w = Math.max(2, x(span.end) - x(span.start));
    svg.append(
      s(
        "rect",
        { class: `span ${span.lane} status-${span.status || "done"}`, x: x(span.start), y, width: w, height: laneHeight - 12, rx: 3 },
        s("title", {}, `${(span.start / 1000).toFixed(2)}–${(span.end / 1000).toFixed(2)} s  ${span.label}${span.detail ? ` ${span.detail}` : ""}`),
      ),
    );
  }
  const markY = laneY("marks");
  for (const mark of timeline.marks) {
    const cx = x(mark.t);
    svg.append(
      s(
        "g",
        { class: `mark ${mark.kind}` },
        s("line", { x1: cx, x2: cx, y1: top, y2: markY + laneHeight - 4 }),
        s("circle", { cx, cy: markY + (laneHeight - 4) / 2, r: 5 }),
        s("title", {}, `${(mark.t / 1000).toFixed(2)} s  ${mark.label}`),
      ),
    );
  }
  const playhead = s("line", { class: "playhead", x1: left, x2: left, y1: top - 4, y2: axisY, visibility: "hidden" });
  svg.append(playhead);
  if (onSeek) {
    svg.addEventListener("click", (event) => {
      const box = svg.getBoundingClientRect();
      const px = ((event.clientX - box.left) / box.width) * width;
      if (px >= left) onSeek(((px - left) / plot) * timeline.durationMs);
    });
  }
  svg.setPlayhead = (ms) => {
    const px = x(Math.min(ms, timeline.durationMs));
    playhead.setAttribute("x1", px);
    playhead.setAttribute("x2", px);
    playhead.setAttribute("visibility", "visible");
  };
  return svg;
}

/**
 * A bar chart: one group per category, one bar per series (side by side, or stacked).
 * @param {{categories: string[], series: {name: string, cls: string, values: (number|null)[]}[],
 *          unit: string, stacked?: boolean, label: string}} chart
 */
export function barChart(chart, width) {
  const left = 52;
  const bottom = 24;
  const top = 22;
  const height = 170;
  const plot = width - left - 8;
  const n = Math.max(1, chart.categories.length);
  const totals = chart.categories.map((_, i) =>
    chart.stacked
      ? chart.series.reduce((sum, series) => sum + (series.values[i] || 0), 0)
      : Math.max(0, ...chart.series.map((series) => series.values[i] || 0)),
  );
  const max = Math.max(1, ...totals);
  const y = (value) => top + (1 - value / max) * (height - top - bottom);
  const svg = s("svg", { class: "bars", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": chart.label });
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    svg.append(
      s("line", { class: "grid", x1: left, x2: width - 8, y1: y(value), y2: y(value) }),
      s("text", { class: "tick-label", x: left - 6, y: y(value), "text-anchor": "end", "dominant-baseline": "middle" }, `${Math.round(value)}`),
    );
  }
  svg.append(s("text", { class: "tick-label unit", x: 4, y: 2, "dominant-baseline": "hanging" }, chart.unit));
  const group = plot / n;
  const barCount = chart.stacked ? 1 : chart.series.length;
  const barWidth = Math.max(2, Math.min(36, (group * 0.7) / barCount));
  chart.categories.forEach((category, i) => {
    const gx = left + i * group + (group - barWidth * barCount) / 2;
    let base = 0;
    chart.series.forEach((series, j) => {
      const value = series.values[i];
      if (value === null || value === undefined) return;
      const bx = chart.stacked ? gx : gx + j * barWidth;
      const y0 = y(base + value);
      const y1 = y(base);
      if (chart.stacked) base += value;
      svg.append(
        s("rect", { class: `bar ${series.cls}`, x: bx, y: y0, width: barWidth - 1, height: Math.max(0, y1 - y0) }, s("title", {}, `${category}: ${series.name} ${Math.round(value)} ${chart.unit}`)),
      );
    });
    if (n <= 30 || i % Math.ceil(n / 30) === 0) {
      svg.append(s("text", { class: "tick-label", x: left + i * group + group / 2, y: height - 8, "text-anchor": "middle" }, category));
    }
  });
  return svg;
}

/** The legend of a chart's series, as HTML (readable at any width). */
export function legend(series) {
  return h(
    "ul",
    { class: "legend" },
    series.map((item) => h("li", {}, h("span", { class: `swatch ${item.cls}`, "aria-hidden": "true" }), item.name)),
  );
}
