// A small SVG bar chart: labels under the bars, the value on hover (a <title>), no library.

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// bars(['0', '1', ...], [3, 5, ...], {title, labelEvery, unit})
export function bars(labels, values, { title, labelEvery = 1, unit = 'visits', width = 520, height = 200 } = {}) {
  const top = 12;
  const bottom = 26;
  const left = 44;
  const plotH = height - top - bottom;
  const plotW = width - left - 8;
  const max = Math.max(1, ...values.map((v) => Number(v) || 0));
  const step = plotW / Math.max(1, values.length);
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': title });
  chart.append(svg('title', null, title));
  for (const tick of [0, 0.5, 1]) {
    const y = top + plotH - tick * plotH;
    chart.append(svg('line', { x1: left, x2: width - 8, y1: y, y2: y, class: 'grid' }));
    chart.append(svg('text', { x: left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, Math.round(tick * max)));
  }
  values.forEach((raw, i) => {
    const value = Number(raw) || 0;
    const barH = (value / max) * plotH;
    const x = left + i * step + step * 0.12;
    const bar = svg('rect', { x, y: top + plotH - barH, width: step * 0.76, height: Math.max(barH, 0), class: 'bar' });
    bar.append(svg('title', null, `${labels[i]}: ${value} ${unit}`));
    chart.append(bar);
    if (i % labelEvery === 0) {
      chart.append(svg('text', { x: x + step * 0.38, y: height - 8, class: 'axis', 'text-anchor': 'middle' }, labels[i]));
    }
  });
  return chart;
}

// one bar split in two shares, e.g. desktop vs mobile
export function split(parts, { title } = {}) {
  const total = parts.reduce((sum, [, v]) => sum + (Number(v) || 0), 0);
  const chart = svg('svg', { viewBox: '0 0 520 70', class: 'chart split', role: 'img', 'aria-label': title });
  chart.append(svg('title', null, title));
  let x = 0;
  parts.forEach(([label, raw], i) => {
    const value = Number(raw) || 0;
    const w = total ? (value / total) * 520 : 520 / parts.length;
    const share = total ? Math.round((100 * value) / total) : 0;
    const rect = svg('rect', { x, y: 0, width: w, height: 34, class: `part part${i}` });
    rect.append(svg('title', null, `${label}: ${value} (${share}%)`));
    chart.append(rect);
    chart.append(svg('rect', { x: 2 + (i * 520) / parts.length, y: 46, width: 10, height: 10, class: `part part${i}` }));
    chart.append(svg('text', { x: 16 + (i * 520) / parts.length, y: 55, class: 'axis' }, `${label} ${value} (${share}%)`));
    x += w;
  });
  return chart;
}
