"""The single HTML page of ``text4seg app`` (no external assets: works offline and on loopback).

The script reads the chosen file as a data URL, POSTs ``/api/segment`` (see :mod:`text4seg.serving.app`)
and renders one card per expression: overlay, mask download links, the answer text and the repairs.
``#results`` gets ``data-state="done"`` (or ``"error"``) when a response has been rendered, which is what
the browser test waits for.
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>text4seg</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #222; }
 header { background: #263238; color: #fff; padding: 10px 20px; }
 header h1 { margin: 0; font-size: 19px; } header span { color: #b0bec5; font-size: 13px; }
 main { display: flex; gap: 20px; padding: 16px 20px; align-items: flex-start; }
 #form { flex: 0 0 330px; background: #fff; padding: 14px; border-radius: 8px; box-shadow: 0 1px 3px #0002; }
 #form label { display: block; margin: 10px 0 4px; font-weight: 600; font-size: 13px; }
 #form textarea, #form input[type=text] { width: 100%; box-sizing: border-box; font: inherit; }
 #form textarea { height: 80px; }
 #preview { max-width: 100%; margin-top: 6px; border-radius: 4px; display: none; }
 .switch { font-weight: normal !important; display: flex !important; gap: 6px; align-items: center; }
 button { margin-top: 12px; padding: 8px 18px; font: inherit; background: #00796b; color: #fff;
          border: 0; border-radius: 5px; cursor: pointer; } button:disabled { background: #999; }
 #status { margin-top: 8px; font-size: 13px; color: #555; min-height: 1.2em; }
 #status.error { color: #b00020; }
 #results { flex: 1; display: flex; flex-direction: column; gap: 14px; }
 .card { background: #fff; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 3px #0002; }
 .card h2 { margin: 0 0 6px; font-size: 16px; } .card img.overlay { max-width: 100%; display: block; }
 .card pre { background: #f1f1ee; padding: 6px 8px; white-space: pre-wrap; word-break: break-all;
             font-size: 12px; max-height: 140px; overflow: auto; }
 .badge { display: inline-block; font-size: 12px; padding: 1px 7px; border-radius: 9px; margin-left: 6px; }
 .ok { background: #c8e6c9; } .bad { background: #ffe0b2; }
 .links a { margin-right: 14px; font-size: 13px; }
</style></head>
<body>
<header><h1>text4seg <span>text-as-mask segmentation: upload, ask, look</span></h1></header>
<main>
<div id="form">
 <label for="image">Image</label><input id="image" type="file" accept="image/*">
 <img id="preview" alt="the uploaded image">
 <label for="expressions">Expressions (one per line)</label>
 <textarea id="expressions" placeholder="the red circle"></textarea>
 <label for="template">Question template</label>
 <input id="template" type="text" maxlength="500" value="Can you segment {target} in this picture?">
 <label class="switch"><input id="constrained" type="checkbox"> constrained decoding</label>
 <label class="switch"><input id="refine" type="checkbox"> SAM refinement <span id="samnote"></span></label>
 <button id="submit">Segment</button>
 <div id="status"></div>
</div>
<div id="results" data-state="idle"></div>
</main>
<script>
const $ = (id) => document.getElementById(id);
let imageUrl = null;
fetch('/health').then(r => r.json()).then(h => {
  if (!h.sam) { $('refine').disabled = true; $('samnote').textContent = '(start with --sam-checkpoint)'; }
});
$('image').addEventListener('change', () => {
  const f = $('image').files[0]; if (!f) return;
  const rd = new FileReader();
  rd.onload = () => {
    imageUrl = rd.result; $('preview').src = imageUrl; $('preview').style.display = 'block';
  };
  rd.readAsDataURL(f);
});
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function card(r, i) {
  const c = el('div', {class: 'card', 'data-index': i});
  const h = el('h2', {}, r.expression);
  h.appendChild(el('span', {class: 'badge ' + (r.parse_valid ? 'ok' : 'bad')},
                   r.parse_valid ? 'parses strictly' : 'repaired'));
  c.appendChild(h);
  c.appendChild(el('img', {class: 'overlay', src: r.overlay, alt: 'overlay for ' + r.expression}));
  const links = el('div', {class: 'links'});
  links.appendChild(el('a', {class: 'mask-download', href: r.mask, download: 'mask_' + (i + 1) + '.png'},
                       'coarse mask (PNG)'));
  if (r.refined_mask) links.appendChild(el('a', {class: 'refined-download', href: r.refined_mask,
                       download: 'mask_' + (i + 1) + '_sam.png'}, 'SAM-refined mask (PNG)'));
  c.appendChild(links);
  c.appendChild(el('div', {}, 'Question: ' + r.question + ' (' + r.num_tokens + ' tokens)'));
  c.appendChild(el('pre', {class: 'answer'}, r.answer));
  const rep = r.repairs.length ? r.repairs.map(x => x[0] + (x[1] === null ? '' : ' (row ' + x[1] + ')') +
              ': ' + x[2]).join('\\n') : 'none';
  c.appendChild(el('div', {}, 'Repairs by the lenient decoder:'));
  c.appendChild(el('pre', {class: 'repairs'}, rep));
  return c;
}
$('submit').addEventListener('click', async () => {
  const res = $('results'), st = $('status');
  st.className = '';
  if (!imageUrl) { st.className = 'error'; st.textContent = 'choose an image first'; return; }
  $('submit').disabled = true; st.textContent = 'segmenting...'; res.dataset.state = 'busy';
  try {
    const body = {image: imageUrl, expressions: $('expressions').value.split('\\n'),
                  template: $('template').value, constrained: $('constrained').checked,
                  refine: $('refine').checked};
    const r = await fetch('/api/segment', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                           body: JSON.stringify(body)});
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.statusText);
    res.replaceChildren(...j.results.map(card));
    st.textContent = j.results.length + ' result(s)'; res.dataset.state = 'done';
  } catch (e) {
    st.className = 'error'; st.textContent = String(e.message || e); res.dataset.state = 'error';
  } finally { $('submit').disabled = false; }
});
</script>
</body></html>
"""
