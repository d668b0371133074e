// sendit batches dashboard: what only the browser can do for the server-rendered page
// (sendit_ops/airflow/dashboard/view.py). Plain JS, no library, nothing loaded from outside.
//
// - times: the page carries UTC instants (<time data-ts>); they are shown in the reader's
//   own time zone, to the second, and the filter form sends that zone (tz) so typed dates
//   mean the reader's days.
// - links into Airflow: the UI shows this page in an <iframe sandbox> without
//   allow-top-navigation, so a plain target="_top" link is blocked by the browser. The frame
//   is same-origin (allow-same-origin), so a click asks the UI's own router to go there:
//   history.pushState + popstate on the top window, as the browser's Back button would.
//   Opened on its own (no frame), links are ordinary links.
// - the throughput chart, drawn as inline SVG from the JSON embedded in the page.
(function () {
  "use strict";

  const html = document.documentElement;
  const SVG = "http://www.w3.org/2000/svg";

  function topWindow() {
    // the Airflow UI around this frame, when there is one and it is ours (same origin)
    try {
      if (window.top !== window && window.top.location.origin === window.location.origin) {
        return window.top;
      }
    } catch (e) {
      // another origin frames us: nothing of it is reachable
    }
    return null;
  }

  const airflow = topWindow();
  html.classList.toggle("embedded", airflow !== null);

  // ---- colour mode: follow the Airflow UI's (its <html class="dark">), else the system --
  function darkMode() {
    try {
      if (airflow) return airflow.document.documentElement.classList.contains("dark");
    } catch (e) {
      // fall through to the system preference
    }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  html.classList.toggle("dark", darkMode());
  if (airflow && window.MutationObserver) {
    new MutationObserver(() => html.classList.toggle("dark", darkMode())).observe(
      airflow.document.documentElement,
      { attributes: true, attributeFilter: ["class"] },
    );
  }

  // ---- times ---------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");

  function localTime(ts) {
    const d = new Date(ts * 1000);
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
    );
  }

  function shortTime(ts, minutes, withDay) {
    const d = new Date(ts * 1000);
    const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    if (minutes >= 1440) return day;
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return withDay ? `${day} ${hm}` : hm;
  }

  const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone || "").trim();
  document.querySelectorAll("time[data-ts]").forEach((el) => {
    el.title = el.getAttribute("datetime");
    el.textContent = localTime(Number(el.dataset.ts));
  });
  const zoneName = document.getElementById("tz-name");
  if (zoneName) zoneName.textContent = zone ? `your time zone (${zone})` : "your time zone";

  // ---- filters -------------------------------------------------------------------------
  const form = document.getElementById("filters");
  if (form) {
    const tz = form.querySelector("input[name=tz]");
    if (tz) tz.value = zone;
    form.addEventListener("submit", () => {
      // a short address: only the filters in use
      form.querySelectorAll("input, select").forEach((field) => {
        if (!field.value) field.disabled = true;
      });
    });
    form.addEventListener("change", (ev) => {
      if (ev.target.tagName === "SELECT") form.requestSubmit();
    });
  }

  // ---- links into the Airflow UI -------------------------------------------------------
  function openInAirflow(path) {
    if (!airflow) return false;
    const url = (document.body.dataset.uiBase || "/") + path;
    try {
      const previous = airflow.history.state || {};
      const idx = typeof previous.idx === "number" ? previous.idx + 1 : 0;
      const key = Math.random().toString(36).slice(2, 10);
      airflow.history.pushState({ usr: null, key, idx }, "", url);
      airflow.dispatchEvent(new airflow.PopStateEvent("popstate", { state: airflow.history.state }));
      return true;
    } catch (e) {
      return false; // the link's own target="_top" is the last resort
    }
  }

  document.addEventListener("click", (ev) => {
    const link = ev.target.closest && ev.target.closest("a[data-airflow-path]");
    if (!link || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) {
      return;
    }
    if (openInAirflow(link.dataset.airflowPath)) ev.preventDefault();
  });

  // ---- throughput chart ----------------------------------------------------------------
  function el(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, String(v)));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // the top of an axis of 4 ticks, each a round number (1, 2, 2.5 or 5 times a power of 10)
  function niceMax(value) {
    if (!(value > 0)) return 4;
    const tick = value / 4;
    const power = Math.pow(10, Math.floor(Math.log10(tick)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * power >= tick) return 4 * step * power;
    }
    return 40 * power;
  }

  function formatNumber(v) {
    if (v === 0) return "0";
    if (Math.abs(v) >= 100) return v.toFixed(0);
    return String(Number(v.toPrecision(3)));
  }

  function drawChart() {
    const svg = document.getElementById("throughput-chart");
    const source = document.getElementById("throughput-data");
    if (!svg || !source) return;
    const data = JSON.parse(source.textContent);
    const buckets = data.buckets || [];
    const minutes = data.bucket_minutes;
    const W = 900;
    const H = 260;
    const m = { left: 60, right: 64, top: 24, bottom: 42 };
    const iw = W - m.left - m.right;
    const ih = H - m.top - m.bottom;
    const maxMb = niceMax(Math.max(0, ...buckets.map((b) => b.mb_per_min)));
    const maxImages = niceMax(Math.max(0, ...buckets.map((b) => b.images_per_h)));
    const step = iw / Math.max(buckets.length, 1);
    const x = (i) => m.left + i * step;
    const yMb = (v) => m.top + ih - (v / maxMb) * ih;
    const yImages = (v) => m.top + ih - (v / maxImages) * ih;

    svg.replaceChildren();
    const grid = el("g", { class: "grid" });
    for (let i = 0; i <= 4; i++) {
      const y = m.top + (ih * i) / 4;
      grid.append(el("line", { x1: m.left, x2: m.left + iw, y1: y, y2: y }));
      grid.append(
        el("text", { x: m.left - 6, y: y + 4, class: "tick left" }, formatNumber(maxMb * (1 - i / 4))),
      );
      grid.append(
        el(
          "text",
          { x: m.left + iw + 6, y: y + 4, class: "tick right" },
          formatNumber(maxImages * (1 - i / 4)),
        ),
      );
    }
    svg.append(grid);
    svg.append(el("text", { x: 4, y: 14, class: "axis-title mb" }, "MB/min"));
    svg.append(el("text", { x: W - 4, y: 14, class: "axis-title images" }, "images/h"));

    const bars = el("g", { class: "bars" });
    const gap = step > 4 ? 1 : 0;
    let drawn = 0;
    buckets.forEach((b, i) => {
      const h = (b.mb_per_min / maxMb) * ih;
      const bar = el("rect", {
        class: "bar",
        x: x(i) + gap,
        y: m.top + ih - h,
        width: Math.max(step - 2 * gap, 0.5),
        height: h,
        "data-start": b.start_ts,
      });
      bar.append(
        el(
          "title",
          {},
          `${localTime(b.start_ts)} (+${minutes} min): ${b.batches} batch(es), ` +
            `${b.images} images, ${b.mb} MB; ${b.mb_per_min} MB/min, ${b.images_per_h} images/h`,
        ),
      );
      bars.append(bar);
      if (h > 0) drawn += 1;
    });
    svg.append(bars);

    if (buckets.length) {
      const points = buckets.map((b, i) => `${x(i) + step / 2},${yImages(b.images_per_h)}`);
      svg.append(el("path", { class: "line", d: `M${points.join("L")}` }));
      const dots = el("g", { class: "dots" });
      buckets.forEach((b, i) => {
        if (b.images_per_h > 0) {
          dots.append(el("circle", { cx: x(i) + step / 2, cy: yImages(b.images_per_h), r: 3 }));
        }
      });
      svg.append(dots);
    }

    const axis = el("g", { class: "axis" });
    axis.append(el("line", { x1: m.left, x2: m.left + iw, y1: m.top + ih, y2: m.top + ih }));
    const every = Math.max(1, Math.ceil(buckets.length / 8));
    let lastDay = "";
    buckets.forEach((b, i) => {
      if (i % every !== 0) return;
      const day = new Date(b.start_ts * 1000).toDateString();
      const label = shortTime(b.start_ts, minutes, day !== lastDay);
      lastDay = day;
      axis.append(el("line", { x1: x(i), x2: x(i), y1: m.top + ih, y2: m.top + ih + 4 }));
      axis.append(el("text", { x: x(i), y: m.top + ih + 18, class: "tick bottom" }, label));
    });
    svg.append(axis);

    if (!drawn) {
      svg.append(
        el(
          "text",
          { x: m.left + iw / 2, y: m.top + ih / 2, class: "nodata" },
          "no batch delivered in this window",
        ),
      );
    }
    svg.dataset.drawn = "1";
    svg.dataset.bars = String(drawn);
  }

  drawChart();
})();
