// The leaderboard page's interactive part, drawn by Plotly from the JSON of #licbench-data
// (licbench/bench/interactive.py says what it holds). Without JavaScript the page shows its tables,
// the static RD plots and the crops; this reveals #interactive and hides the static plots once drawn.
document.addEventListener("DOMContentLoaded", () => {
  "use strict";
  const data = JSON.parse(document.getElementById("licbench-data").textContent);
  const $ = (id) => document.getElementById(id);
  const config = {displaylogo: false, responsive: true};
  const value = "%{y:.4r}";

  function fill(select, items) {  // items: [value, label] pairs
    select.replaceChildren(...items.map(([key, label]) => new Option(label, key)));
  }
  function metric() {
    return data.metrics.find((m) => m.key === $("rd-metric").value);
  }
  function layout(title) {
    return {title: {text: title, font: {size: 14}}, hovermode: "closest", margin: {t: 40, r: 10},
            xaxis: {title: {text: "bits per pixel (from real bytes)"}, type: $("rd-log").checked ? "log" : "linear"},
            yaxis: {title: {text: metric().label}}, legend: {font: {size: 11}}};
  }
  function cropSource(file) {  // the picture of the static crops' figure (the page embeds it once)
    const img = document.querySelector(`img[data-file="${file}"]`);
    return img ? img.src : "";
  }

  // --- the RD plot: one trace per codec (mean over images), the published curves dashed ---
  function rdTraces(key) {
    const measured = data.codecs.map((c) => {
      const v = c.values[key];
      return {name: c.name, meta: "measured", x: c.bpp, y: v.mean, mode: "lines+markers",
              line: {color: c.colour}, marker: {size: 6},
              customdata: c.rate.map((rate, i) => [rate, c.images[i], v.min[i], v.max[i], v.std[i]]),
              hovertemplate: `<b>%{fullData.name}</b> @ %{customdata[0]}<br>%{x:.4f} bpp, ${value}<br>` +
                "over %{customdata[1]} images: %{customdata[2]:.4r} – %{customdata[3]:.4r}, " +
                "std %{customdata[4]:.3r}<extra></extra>"};
    });
    const published = data.references.filter((r) => key in r.values).map((r) => ({
      name: `${r.name} (published)`, meta: "published", x: r.bpp, y: r.values[key], mode: "lines",
      line: {color: r.colour, dash: "dash", width: 1.5},
      hovertemplate: `<b>%{fullData.name}</b><br>%{x:.4f} bpp, ${value}<extra></extra>`}));
    return [...measured, ...published];
  }

  // --- one image: its curves, and its crops where the benchmark made them ---
  function imageTraces(image, key) {
    return data.codecs.filter((c) => image.codecs[c.name]).map((c) => {
      const points = image.codecs[c.name];
      return {name: c.name, meta: "measured", x: points.bpp, y: points.values[key], mode: "lines+markers",
              line: {color: c.colour}, customdata: points.rate,
              hovertemplate: `<b>%{fullData.name}</b> @ %{customdata}<br>%{x:.4f} bpp, ${value}<extra></extra>`};
    });
  }
  function showCrops(image) {
    const box = $("image-crops");
    box.replaceChildren();
    if (!data.crops) return;
    if (data.crops.image !== image.name) {
      box.textContent = `Crops: of ${data.crops.image} only (the benchmark's crop_image).`;
      return;
    }
    for (const target of data.crops.targets) {
      const row = document.createElement("div");
      row.append(Object.assign(document.createElement("h3"), {textContent: `≈ ${target.target} bpp`}));
      for (const entry of target.entries) {
        const figure = document.createElement("figure");
        figure.append(Object.assign(new Image(192), {src: cropSource(entry.file), alt: entry.caption}),
                      Object.assign(document.createElement("figcaption"), {textContent: entry.caption}));
        row.append(figure);
      }
      box.append(row);
    }
  }

  function draw() {
    const key = $("rd-metric").value;
    const image = data.images.find((i) => i.name === $("image-select").value);
    Plotly.react("rd-plot", rdTraces(key), layout(`mean over images, ${metric().label}`), config);
    Plotly.react("image-plot", imageTraces(image, key), layout(image.name), config);
  }

  // --- A/B: two codecs' crops at one target bpp, a split slider and zoom ---
  function abSetup() {
    if (!data.crops) {
      $("ab").textContent = "No crops in this benchmark.";
      return;
    }
    const entries = (target) => data.crops.targets.find((t) => t.target === target).entries;
    fill($("ab-target"), data.crops.targets.map((t) => [t.target, t.target]));
    const codecs = [...new Set(data.crops.targets.flatMap((t) => t.entries.map((e) => e.codec)))];
    for (const [select, index] of [[$("ab-a"), 1], [$("ab-b"), 2]]) {
      fill(select, codecs.map((c) => [c, c]));
      select.value = codecs[Math.min(index, codecs.length - 1)];
    }
    const view = $("ab-view"), top = $("ab-top"), bottom = $("ab-bottom"), slider = $("ab-slider");
    function split() {
      top.style.clipPath = `inset(0 ${100 - slider.value}% 0 0)`;
      $("ab-split").style.left = `${slider.value}%`;
    }
    function zoom() {
      view.style.width = `${(bottom.naturalWidth || 192) * $("ab-zoom").value}px`;
    }
    function pick() {
      const shown = entries($("ab-target").value);
      const find = (codec) => shown.find((e) => e.codec === codec);
      const a = find($("ab-a").value), b = find($("ab-b").value);
      top.src = a ? cropSource(a.file) : "";
      bottom.src = b ? cropSource(b.file) : "";
      $("ab-caption").textContent = `left, A: ${a ? a.caption : "no crop"} | right, B: ${b ? b.caption : "no crop"}`;
      zoom();
    }
    function drag(event) {  // a press or a drag on the pictures moves the split there
      if (event.buttons !== 1) return;
      event.preventDefault();
      const box = view.getBoundingClientRect();
      slider.value = Math.round(100 * Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1));
      split();
    }
    for (const id of ["ab-a", "ab-b", "ab-target"]) $(id).addEventListener("change", pick);
    $("ab-zoom").addEventListener("change", zoom);
    bottom.addEventListener("load", zoom);
    slider.addEventListener("input", split);
    view.addEventListener("pointerdown", (event) => {
      view.setPointerCapture(event.pointerId);
      drag(event);
    });
    view.addEventListener("pointermove", drag);
    pick();
    split();
  }

  $("interactive").hidden = false;
  fill($("rd-metric"), data.metrics.map((m) => [m.key, m.label]));
  fill($("image-select"), data.images.map((i) => [i.name, i.name]));
  if (data.crops && data.images.some((i) => i.name === data.crops.image)) $("image-select").value = data.crops.image;
  $("rd-metric").addEventListener("change", draw);
  $("rd-log").addEventListener("change", draw);
  $("image-select").addEventListener("change", () => {
    draw();
    showCrops(data.images.find((i) => i.name === $("image-select").value));
  });
  draw();
  showCrops(data.images.find((i) => i.name === $("image-select").value));
  abSetup();
  $("static-rd").hidden = true;
});
