// sendit batches dashboard: what only the browser can do for the server-rendered page
// (sendit_ops/airflow/dashboard/view.py). Plain JS; one library, Chart.js, shipped beside it:
// nothing is loaded from outside.
//
// - times: the page carries UTC instants (<time data-ts>); they are shown in the reader's
//   own time zone, to the second, and the filter form sends that zone (tz) so typed dates
//   mean the reader's days.
// - links into Airflow: the UI shows this page in an <iframe sandbox> without
//   allow-top-navigation, so a plain target="_top" link is blocked by the browser. The frame
//   is same-origin (allow-same-origin), so a click asks the UI's own router to go there:
//   history.pushState + popstate on the top window, as the browser's Back button would.
//   Opened on its own (no frame), links are ordinary links.
// - the throughput chart, drawn with Chart.js (vendored in static/) from the JSON embedded in
//   the page.
(function () {
  "use strict";

  const html = document.documentElement;

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
  // Drawn by Chart.js (static/chart.umd.min.js, vendored: the page loads nothing from outside)
  // on a <canvas>: no inline script or eval, so the page's script-src 'self' holds. The
  // buckets and their range come from the server (queries.throughput); this only draws them,
  // labelled in the reader's time zone.
  function colour(name) {
    return getComputedStyle(html).getPropertyValue(name).trim();
  }
  // scriptable colours: read again at each update, so a change of colour mode repaints
  const paint = (name) => () => colour(name);

  // the time labels under the bars: about 8, the day only where it changes
  function tickLabels(buckets, minutes) {
    const every = Math.max(1, Math.ceil(buckets.length / 8));
    let lastDay = "";
    return buckets.map((b, i) => {
      if (i % every !== 0) return null;
      const day = new Date(b.start_ts * 1000).toDateString();
      const label = shortTime(b.start_ts, minutes, day !== lastDay);
      lastDay = day;
      return label;
    });
  }

  // "no batch delivered in this window" across an empty chart
  const noData = {
    id: "senditNoData",
    afterDraw(chart, args, options) {
      if (!options.show) return;
      const { ctx, chartArea: area } = chart;
      ctx.save();
      ctx.fillStyle = colour("--muted");
      ctx.font = "13px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(
        "no batch delivered in this window",
        (area.left + area.right) / 2,
        (area.top + area.bottom) / 2,
      );
      ctx.restore();
    },
  };

  function drawChart() {
    const canvas = document.getElementById("throughput-chart");
    const source = document.getElementById("throughput-data");
    if (!canvas || !source || !window.Chart) return;
    const data = JSON.parse(source.textContent);
    const buckets = data.buckets || [];
    const minutes = data.bucket_minutes;
    const labels = tickLabels(buckets, minutes);
    const drawn = buckets.filter((b) => b.mb_per_min > 0).length;
    const axis = (position, title, colourName) => ({
      type: "linear",
      position,
      beginAtZero: true,
      title: { display: true, text: title, color: paint(colourName) },
      ticks: { maxTicksLimit: 5, color: paint("--muted") },
      grid: { drawOnChartArea: position === "left", color: paint("--line") },
      border: { color: paint("--muted") },
    });
    const chart = new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: buckets.map((b) => localTime(b.start_ts)),
        datasets: [
          {
            type: "bar",
            label: "MB/min",
            data: buckets.map((b) => b.mb_per_min),
            yAxisID: "mb",
            order: 2,
            backgroundColor: paint("--bar"),
            barPercentage: 1,
            categoryPercentage: buckets.length > 200 ? 1 : 0.9,
          },
          {
            type: "line",
            label: "images/h",
            data: buckets.map((b) => b.images_per_h),
            yAxisID: "images",
            order: 1,
            borderColor: paint("--images"),
            pointBackgroundColor: paint("--images"),
            borderWidth: 2,
            pointRadius: buckets.map((b) => (b.images_per_h > 0 ? 3 : 0)),
          },
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: true,
        aspectRatio: 900 / 260,
        animation: false, // the page reloads itself every few seconds while batches run
        interaction: { mode: "index", intersect: false },
        scales: {
          x: {
            ticks: {
              autoSkip: false,
              maxRotation: 0,
              color: paint("--muted"),
              callback: (value, index) => labels[index],
            },
            grid: { display: false },
            border: { color: paint("--muted") },
          },
          mb: axis("left", "MB/min", "--bar"),
          images: axis("right", "images/h", "--images"),
        },
        plugins: {
          legend: { display: false }, // the caption and the axis titles name them
          senditNoData: { show: drawn === 0 },
          tooltip: {
            callbacks: {
              title: (items) =>
                `${localTime(buckets[items[0].dataIndex].start_ts)} (+${minutes} min)`,
              afterBody: (items) => {
                const b = buckets[items[0].dataIndex];
                return `${b.batches} batch(es), ${b.images} images, ${b.mb} MB`;
              },
            },
          },
        },
      },
      plugins: [noData],
    });
    // follow the colour mode (the class "dark" on <html>, see darkMode above)
    if (window.MutationObserver) {
      new MutationObserver(() => chart.update()).observe(html, {
        attributes: true,
        attributeFilter: ["class"],
      });
    }
    canvas.dataset.drawn = "1";
    canvas.dataset.bars = String(drawn);
  }

  drawChart();
})();
