// tinybert-server's web page: tabs, live input checks, requests to /v1/* and result rendering.
// Plain browser JavaScript, no dependencies. All offsets from the server are code-point offsets,
// so texts are handled as arrays of code points (Array.from), never by UTF-16 index.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // ---- small helpers ---------------------------------------------------------------------------

  // Builds an element: el('span', {class: 'x', title: 't'}, child, 'text', ...).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'style') node.style.cssText = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const codePoints = (s) => Array.from(s);
  const percent = (p) => (100 * p).toFixed(1) + '%';
  const ms = (x) => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : Math.round(x).toString()) + ' ms';

  // Shows "…context‸context…" around a code-point position of a text.
  function excerptAt(text, position) {
    const cps = codePoints(text);
    const at = Math.max(0, Math.min(position, cps.length));
    const visible = (chars) => chars.join('').replace(/\n/g, '⏎');
    const before = visible(cps.slice(Math.max(0, at - 12), at));
    const here = at < cps.length ? visible([cps[at]]) : '␣';
    const after = visible(cps.slice(at + 1, at + 13));
    return el('span', {class: 'excerpt'},
      at > 12 ? '…' : '', before, el('mark', {class: 'here'}, here), after, at + 13 < cps.length ? '…' : '');
  }

  // ---- requests --------------------------------------------------------------------------------

  // POSTs a JSON body; resolves to {ok, status, data, error, roundTripMs}. Never rejects.
  async function postJson(path, body) {
    const started = performance.now();
    let response;
    let text = '';
    try {
      response = await fetch(path, {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify(body),
      });
      text = await response.text();
    } catch (e) {
      return {ok: false, status: 0, roundTripMs: performance.now() - started,
              error: {type: 'network', message: '无法连接服务器 (cannot reach the server): ' + e.message}};
    }
    const roundTripMs = performance.now() - started;
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    if (!response.ok || data === null) {
      const error = (data && data.error) || {message: text || response.statusText};
      return {ok: false, status: response.status, error, data, roundTripMs};
    }
    return {ok: true, status: response.status, data, roundTripMs};
  }

  function showLatency(task, result) {
    const span = $(task.prefix + '-latency');
    span.replaceChildren();
    if (result.data && typeof result.data.latency_ms === 'number') {
      span.append(el('span', {class: 'lat-server', title: 'latency_ms: 服务器处理时间 server time'},
        '服务器 ', el('b', {}, ms(result.data.latency_ms))));
    }
    span.append(el('span', {class: 'lat-rtt', title: '往返时间 round trip measured by the browser'},
      '往返 ', el('b', {}, ms(result.roundTripMs))));
    if (result.data && result.data.model) span.append(el('span', {class: 'lat-model'}, '模型 ', el('b', {}, result.data.model)));
  }

  // Puts a server error next to the input: status, type, message, and where (line / position).
  function showServerError(task, result, describeInput) {
    const box = $(task.prefix + '-error');
    const error = result.error || {};
    const head = [result.status ? String(result.status) : null, error.type].filter(Boolean).join(' ');
    const parts = [el('strong', {}, head ? head + ': ' : '错误: '), el('span', {class: 'error-message'}, error.message || '未知错误')];
    if (error.position !== undefined || error.input_index !== undefined) {
      const where = describeInput ? describeInput(error) : null;
      const bits = [];
      if (where && where.label) bits.push(where.label);
      if (error.position !== undefined) bits.push('位置 position ' + error.position);
      const line = el('div', {class: 'error-where'}, bits.join(' · '));
      if (where && where.text !== undefined && error.position !== undefined && error.type !== 'invalid_json') {
        line.append(' ', excerptAt(where.text, error.position));
      }
      parts.push(line);
    }
    box.replaceChildren(...parts);
    box.hidden = false;
  }

  function clearServerError(task) {
    const box = $(task.prefix + '-error');
    box.hidden = true;
    box.replaceChildren();
  }

  // ---- live validation -------------------------------------------------------------------------

  // A check returns {errors: [...], warnings: [...], notes: [...]}; errors block the request.
  function renderChecks(task, checks, touched) {
    const box = $(task.prefix + '-msg');
    box.replaceChildren();
    const shownErrors = checks.errors.filter((e) => touched || !e.quiet);
    for (const e of shownErrors) box.append(el('div', {class: 'msg msg-error'}, '✗ ', e.text));
    for (const w of checks.warnings) box.append(el('div', {class: 'msg msg-warn'}, '! ', w));
    if (!shownErrors.length) for (const n of checks.notes) box.append(el('div', {class: 'msg msg-ok'}, '✓ ', n));
    const run = $(task.prefix + '-run');
    run.disabled = !task.available || task.busy || checks.errors.length > 0;
  }

  // Labels separated by commas (, ， 、) or new lines; a separator at the very end is allowed
  // (the user is typing the next label), an empty label between two others is an error.
  function splitLabels(raw) {
    const labels = raw.split(/[,，、\n]/u).map((s) => s.trim());
    while (labels.length && labels[labels.length - 1] === '') labels.pop();
    return labels;
  }

  function checkClassify() {
    const out = {errors: [], warnings: [], notes: []};
    const text = $('cls-text').value;
    if (text.trim() === '') out.errors.push({quiet: true, text: '请输入文本 (text is empty)'});
    const labels = splitLabels($('cls-labels').value);
    if (labels.length === 0) out.errors.push({quiet: true, text: '请至少输入一个标签 (no labels)'});
    labels.forEach((label, i) => {
      if (label === '') out.errors.push({text: `第 ${i + 1} 个标签为空 (label ${i + 1} is empty)`});
    });
    const seen = new Set();
    for (const label of labels) {
      if (label !== '' && seen.has(label)) out.warnings.push(`标签 “${label}” 重复 (duplicate label)`);
      seen.add(label);
    }
    const template = $('cls-template').value;
    if (template.trim() !== '' && !template.includes('{}')) {
      out.errors.push({text: '模板必须包含 {} (the template needs {} for the label)'});
    }
    if (!out.errors.length && labels.length) out.notes.push(`${labels.length} 个标签 (labels)`);
    return out;
  }

  // The same rules as the server (tasks/fill_mask.hpp validate_mask_text): exactly "[MASK]";
  // "[mask]" and unbalanced "[MASK" / "MASK]" are errors. Positions are 1-based code points.
  function maskProblems(line) {
    const cps = codePoints(line);
    const upper = cps.map((c) => (c.length === 1 ? c.toUpperCase() : c));
    const matches = (at, word, exact) => {
      for (let k = 0; k < word.length; ++k) {
        if (at + k >= cps.length) return false;
        if ((exact ? cps[at + k] : upper[at + k]) !== word[k]) return false;
      }
      return true;
    };
    let masks = 0;
    for (let i = 0; i < cps.length;) {
      if (matches(i, '[MASK]', true)) {
        ++masks;
        i += 6;
        continue;
      }
      if (matches(i, '[MASK]', false)) {
        return {masks, error: {pos: i + 1, text: `“${cps.slice(i, i + 6).join('')}” 不是 [MASK]，请写大写 [MASK] (write [MASK] exactly)`}};
      }
      if (matches(i, '[MASK', false)) {
        return {masks, error: {pos: i + 1, text: '不配对的 “[MASK”，缺少 “]” (unbalanced [MASK without ])'}};
      }
      if (matches(i, 'MASK]', false)) {
        return {masks, error: {pos: i + 1, text: '不配对的 “MASK]”，缺少 “[” (unbalanced MASK] without [)'}};
      }
      ++i;
    }
    return {masks, error: null};
  }

  // Non-blank lines of the fill-mask box with their 1-based line numbers.
  function fillMaskLines() {
    return $('fm-text').value.split('\n')
      .map((text, i) => ({text: text.replace(/\r$/, ''), line: i + 1}))
      .filter((l) => l.text.trim() !== '');
  }

  function checkFillMask() {
    const out = {errors: [], warnings: [], notes: []};
    const lines = fillMaskLines();
    if (lines.length === 0) out.errors.push({quiet: true, text: '请输入带 [MASK] 的文本 (enter a text with [MASK])'});
    let total = 0;
    for (const l of lines) {
      const p = maskProblems(l.text);
      total += p.masks;
      if (p.error) out.errors.push({text: `第 ${l.line} 行第 ${p.error.pos} 个字: ${p.error.text}`});
      else if (p.masks === 0) out.errors.push({text: `第 ${l.line} 行没有 [MASK] (line ${l.line} has no [MASK])`});
    }
    const topK = Number($('fm-topk').value);
    if (!Number.isInteger(topK) || topK < 1 || topK > 50) out.errors.push({text: 'top_k 应为 1–50 的整数'});
    const attribution = Number($('fm-attr').value);
    if (!Number.isInteger(attribution) || attribution < 0 || attribution > 64) out.errors.push({text: '归因数应为 0–64 的整数 (attribution 0..64)'});
    if (!out.errors.length && lines.length) out.notes.push(`${lines.length} 行 (lines), ${total} 个 [MASK]`);
    return out;
  }

  // Checks the shape of a UIE schema as the server does (apart from its size limits).
  function schemaProblem(value) {
    const leaf = (name, path) => (name.trim() === '' ? `${path}: 名称为空 (empty name)` : null);
    const children = (v, path) => {
      if (v === null) return null;
      if (typeof v === 'string') return leaf(v, path);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; ++i) {
          const item = v[i];
          const itemPath = `${path}[${i}]`;
          if (typeof item === 'string') {
            const p = leaf(item, itemPath);
            if (p) return p;
          } else if (item && typeof item === 'object' && !Array.isArray(item)) {
            const p = object(item, itemPath);
            if (p) return p;
          } else {
            return `${itemPath}: 应为名称或对象 (expected a name or an object)`;
          }
        }
        return null;
      }
      if (typeof v === 'object') return object(v, path);
      return `${path}: 应为名称、列表或对象 (expected a name, a list, an object or null)`;
    };
    const object = (v, path) => {
      const keys = Object.keys(v);
      if (keys.length === 0) return `${path}: 空对象 (empty object)`;
      for (const key of keys) {
        const p = leaf(key, `${path}.${key}`) || children(v[key], `${path}.${key}`);
        if (p) return p;
      }
      return null;
    };
    if (value === null) return '$: 结构不能为 null';
    if (Array.isArray(value) && value.length === 0) return '$: 没有名称 (no names)';
    return children(value, '$');
  }

  // Where JSON.parse would fail, with a short reason: browsers' messages differ and some carry
  // no position. Returns null for valid JSON, else {index (UTF-16), reason}.
  function jsonSyntaxError(text) {
    let i = 0;
    const fail = (reason) => {
      throw {jsonIndex: i, reason};
    };
    const space = () => {
      while (i < text.length && ' \t\n\r'.includes(text[i])) ++i;
    };
    const string = () => {
      ++i;
      while (i < text.length) {
        const c = text[i];
        if (c === '"') {
          ++i;
          return;
        }
        if (c === '\\') {
          const e = text[i + 1];
          if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
          else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
          else fail('无效的转义 (bad escape)');
          continue;
        }
        if (c < ' ') fail('字符串中有换行或控制字符 (control character in a string)');
        ++i;
      }
      fail('字符串没有结束 (unterminated string)');
    };
    const value = () => {
      space();
      if (i >= text.length) fail('JSON 不完整 (unexpected end)');
      const c = text[i];
      if (c === '{' || c === '[') {
        const close = c === '{' ? '}' : ']';
        ++i;
        space();
        if (text[i] === close) {
          ++i;
          return;
        }
        for (;;) {
          if (c === '{') {
            space();
            if (text[i] !== '"') fail(i >= text.length ? 'JSON 不完整 (unexpected end)' : '应为 "名称" (expected a "key")');
            string();
            space();
            if (text[i] !== ':') fail('应为冒号 : (expected :)');
            ++i;
          }
          value();
          space();
          if (text[i] === ',') {
            ++i;
            continue;
          }
          if (text[i] === close) {
            ++i;
            return;
          }
          fail(i >= text.length ? `JSON 不完整，缺少 ${close} (unexpected end)` : `应为逗号或 ${close} (expected , or ${close})`);
        }
      }
      if (c === '"') return string();
      if (c === ']' || c === '}') fail('多余的逗号或缺少值 (trailing comma or missing value)');
      if ('“”‘’，：'.includes(c)) fail(`全角符号 ${c}，请用半角 " , : (use ASCII quotes, commas and colons)`);
      const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
      if (number) {
        i += number[0].length;
        return;
      }
      for (const word of ['true', 'false', 'null']) {
        if (text.startsWith(word, i)) {
          i += word.length;
          return;
        }
      }
      fail(`意外的字符 “${codePoints(text.slice(i, i + 2))[0]}” (unexpected character)`);
    };
    try {
      value();
      space();
      if (i < text.length) fail('JSON 之后还有内容 (unexpected text after the JSON)');
      return null;
    } catch (e) {
      if (e && e.jsonIndex !== undefined) return {index: e.jsonIndex, reason: e.reason};
      throw e;
    }
  }

  // Line and column (1-based) of a UTF-16 index.
  function lineColumn(text, index) {
    const before = text.slice(0, index).split('\n');
    return {line: before.length, column: codePoints(before[before.length - 1]).length + 1};
  }

  function parseSchema() {
    const raw = $('ex-schema').value;
    if (raw.trim() === '') return {error: {quiet: true, text: '请输入抽取结构 JSON (schema is empty)'}};
    try {
      const schema = JSON.parse(raw);
      const problem = schemaProblem(schema);
      return problem ? {error: {text: 'schema ' + problem}} : {schema};
    } catch (e) {
      const found = jsonSyntaxError(raw);
      if (!found) return {error: {text: 'JSON 无效 (invalid schema JSON): ' + e.message}};
      const lc = lineColumn(raw, found.index);
      return {error: {text: [`JSON 无效 (invalid schema JSON) 第 ${lc.line} 行第 ${lc.column} 列: ${found.reason} `,
                             excerptAt(raw, codePoints(raw.slice(0, found.index)).length)]}};
    }
  }

  function checkExtract() {
    const out = {errors: [], warnings: [], notes: []};
    if ($('ex-text').value.trim() === '') out.errors.push({quiet: true, text: '请输入文本 (text is empty)'});
    const parsed = parseSchema();
    if (parsed.error) out.errors.push(parsed.error);
    const threshold = Number($('ex-threshold').value);
    if (!(threshold >= 0 && threshold <= 1)) out.errors.push({text: '阈值应在 0–1 之间 (threshold 0..1)'});
    if (!out.errors.length) out.notes.push('结构有效 (schema OK)');
    return out;
  }

  // ---- classify --------------------------------------------------------------------------------

  const classifyExamples = [
    {text: '国足在世界杯预选赛中以二比零战胜对手，球迷们欢呼雀跃。', labels: '体育，财经，科技，娱乐'},
    {text: '这家餐厅的菜很好吃，服务也很热情，下次还会再来。', labels: '正面，负面'},
    {text: '央行宣布下调存款准备金率，股市应声上涨。', labels: '体育，财经，科技，娱乐'},
  ];

  function renderClassify(data) {
    const out = $('cls-result');
    out.replaceChildren();
    const meta = el('div', {class: 'meta'},
      data.mode ? el('span', {class: 'tag'}, data.mode === 'embedding' ? '向量模式 embedding' : 'NLI 模式') : null,
      data.template ? el('span', {class: 'tag'}, '模板 ', el('code', {}, data.template)) : null,
      el('span', {class: 'tag'}, data.multi_label ? '多标签 multi-label' : '单标签 single-label'));
    out.append(meta);
    for (const r of data.results) {
      const chart = el('div', {class: 'bars', role: 'list'});
      const best = r.labels.length ? r.labels[0].label : null;
      for (const item of r.labels) {
        const width = Math.max(0, Math.min(1, item.score)) * 100;
        const row = el('div', {class: 'bar-row' + (item.selected ? ' selected' : '') + (item.label === best ? ' best' : ''),
                               role: 'listitem', 'data-label': item.label, 'data-score': item.score},
          el('span', {class: 'bar-label', title: item.label}, item.label),
          el('span', {class: 'bar-track'}, el('span', {class: 'bar-fill', style: `width: ${width.toFixed(2)}%`})),
          el('span', {class: 'bar-score'}, percent(item.score)),
          el('span', {class: 'bar-cos'}, typeof item.cosine === 'number' ? 'cos ' + item.cosine.toFixed(3) : ''));
        chart.append(row);
      }
      out.append(el('div', {class: 'card'},
        el('div', {class: 'card-text'}, r.text),
        chart,
        best ? el('div', {class: 'verdict'}, '结果 result: ', el('b', {class: 'best-label'}, best)) : null));
    }
  }

  async function runClassify(task) {
    const body = {input: $('cls-text').value, labels: splitLabels($('cls-labels').value)};
    if ($('cls-multi').checked) body.multi_label = true;
    const template = $('cls-template').value.trim();
    if (template) body.template = template;
    const result = await postJson('v1/classify', body);
    showLatency(task, result);
    if (!result.ok) {
      showServerError(task, result, () => ({label: '文本 text', text: body.input}));
      return;
    }
    renderClassify(result.data);
  }

  // ---- fill-mask -------------------------------------------------------------------------------

  const fillMaskExamples = [
    '《红楼梦》的作者是曹[MASK]芹；你读过吗？\n学而时习之，不亦[MASK]乎？有朋自远方来，不亦乐乎？\n他是一名[MASK]生，每天都在医院给病人看病。',
    '我昨天用python写了100行代码，感觉很[MASK]。\n白日依山尽，黄河入[MASK]流。',
  ];

  // Renders one text with its masks and the selected mask's attributed context tokens.
  function renderMaskedText(container, text, masks, selected) {
    const cps = codePoints(text);
    const kind = new Array(cps.length).fill(null);  // per code point: {mask} or {attr}
    masks.forEach((m, i) => {
      for (let c = m.start; c < m.end && c < cps.length; ++c) kind[c] = {mask: i};
    });
    const attribution = (masks[selected] && masks[selected].attribution) || [];
    const top = Math.max(1e-9, ...attribution.map((a) => Math.abs(a.weight)));
    attribution.forEach((a, rank) => {
      for (let c = a.start; c < a.end && c < cps.length; ++c) {
        if (!kind[c]) kind[c] = {attr: a, rank, strength: Math.abs(a.weight) / top};
      }
    });
    const nodes = [];
    let c = 0;
    while (c < cps.length) {
      const k = kind[c];
      let end = c + 1;
      if (k && k.mask !== undefined) {
        while (end < cps.length && kind[end] && kind[end].mask === k.mask) ++end;
        const m = masks[k.mask];
        const topToken = m.candidates && m.candidates.length ? m.candidates[0].token : '';
        nodes.push(el('span', {class: 'mask-chip' + (k.mask === selected ? ' active' : ''), 'data-mask': k.mask,
                               'data-top': topToken, title: `[MASK] #${k.mask + 1} → ${topToken}`,
                               onclick: () => selectMask(container, k.mask)},
                      cps.slice(c, end).join('')));
      } else if (k && k.attr) {
        while (end < cps.length && kind[end] && kind[end].attr === k.attr) ++end;
        const alpha = (0.18 + 0.72 * k.strength).toFixed(3);
        nodes.push(el('span', {class: 'attr', 'data-weight': k.attr.weight.toFixed(4),
                               style: `background-color: rgba(234, 128, 20, ${alpha})`,
                               title: `归因权重 attention weight ${k.attr.weight.toFixed(3)} (#${k.rank + 1})`},
                      cps.slice(c, end).join('')));
      } else {
        while (end < cps.length && !kind[end]) ++end;
        nodes.push(document.createTextNode(cps.slice(c, end).join('')));
      }
      c = end;
    }
    container.querySelector('.masked-text').replaceChildren(...nodes);
  }

  function selectMask(card, index) {
    const state = card._fillMask;
    state.selected = index;
    renderMaskedText(card, state.text, state.masks, index);
    card.querySelectorAll('.mask-table').forEach((t, i) => t.classList.toggle('active', i === index));
  }

  function renderFillMask(data, lines) {
    const out = $('fm-result');
    out.replaceChildren(el('div', {class: 'meta'},
      el('span', {class: 'legend-item'}, el('span', {class: 'swatch attr-swatch'}),
        '橙色越深 = 该 [MASK] 越关注的上下文 (darker orange: context the mask attends to most)'),
      el('span', {class: 'legend-item'}, '点击表格切换 [MASK] (click a table to switch masks)')));
    data.results.forEach((r, i) => {
      const lineNumber = lines[i] ? lines[i].line : i + 1;
      const card = el('div', {class: 'card fm-card', 'data-index': i},
        el('div', {class: 'card-head'}, `第 ${lineNumber} 行 · line ${lineNumber}`,
          el('span', {class: 'hint'}, `${r.masks.length} 个 [MASK]`)),
        el('div', {class: 'masked-text'}));
      const tables = el('div', {class: 'mask-tables' + (r.masks.length > 1 ? ' multi' : '')});
      r.masks.forEach((m, mi) => {
        const rows = (m.candidates || []).map((cand, rank) =>
          el('tr', {},
            el('td', {class: 'rank'}, rank + 1),
            el('td', {class: 'token'}, cand.token),
            el('td', {class: 'prob'}, el('span', {class: 'prob-cell'},
              el('span', {class: 'prob-bar'}, el('span', {class: 'prob-fill', style: `width: ${(100 * cand.probability).toFixed(2)}%`})),
              el('span', {class: 'prob-value'}, percent(cand.probability))))));
        const attributed = (m.attribution || []).map((a) => a.token).join(' ');
        const table = el('table', {class: 'mask-table' + (mi === 0 ? ' active' : ''), 'data-mask': mi,
                                   onclick: () => selectMask(card, mi)},
          el('caption', {}, `[MASK] #${mi + 1}`, el('small', {}, ` 字 ${m.start + 1}–${m.end}`)),
          el('thead', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, '候选 token'), el('th', {}, '概率 probability'))),
          el('tbody', {}, rows),
          attributed ? el('tfoot', {}, el('tr', {}, el('td', {colspan: 3}, '归因 attended: ', attributed))) : null);
        tables.append(table);
      });
      card.append(tables);
      card._fillMask = {text: r.text, masks: r.masks, selected: 0};
      renderMaskedText(card, r.text, r.masks, 0);
      out.append(card);
    });
  }

  async function runFillMask(task) {
    const lines = fillMaskLines();
    const body = {input: lines.map((l) => l.text), top_k: Number($('fm-topk').value),
                  attribution: Number($('fm-attr').value)};
    const result = await postJson('v1/fill-mask', body);
    showLatency(task, result);
    if (!result.ok) {
      showServerError(task, result, (e) => {
        const l = e.input_index !== undefined ? lines[e.input_index] : null;
        return l ? {label: `第 ${l.line} 行 line ${l.line}`, text: l.text} : null;
      });
      return;
    }
    renderFillMask(result.data, lines);
  }

  // ---- extract ---------------------------------------------------------------------------------

  const schemaExamples = {
    entities: ['人名', '地址', '组织机构', '职位'],
    relation: {'人名': ['职位', '组织机构']},
    classification: ['情感倾向[正向，负向]'],
  };
  const extractExamples = [
    {text: '张三在北京大学工作，他是一名教授。', schema: ['人名', '职位', '组织机构']},
    {text: '周杰伦和林俊杰昨晚在台北同台演出。', schema: ['人名', '地址']},
    {text: '腾讯公司发布了新游戏《王者荣耀》，玩家数量超过一亿。', schema: ['公司', '游戏']},
  ];
  const palette = ['#2f6fde', '#d9480f', '#2b8a3e', '#ae3ec9', '#e67700', '#0c8599', '#c2255c', '#5f3dc4'];

  function formatSchema(schema) {
    if (Array.isArray(schema) && schema.every((s) => typeof s === 'string')) {
      return '[' + schema.map((s) => JSON.stringify(s)).join(', ') + ']';
    }
    return JSON.stringify(schema, null, 2);
  }

  // All spans with offsets (top level and relations) with their schema path.
  function collectSpans(extraction, path, out) {
    for (const [name, spans] of Object.entries(extraction || {})) {
      for (const s of spans) {
        if (typeof s.start === 'number' && typeof s.end === 'number' && s.end > s.start) {
          out.push({name, path: path ? path + ' › ' + name : name, span: s});
        }
        if (s.relations) collectSpans(s.relations, path ? path + ' › ' + name : name, out);
      }
    }
    return out;
  }

  function highlightSpans(text, spans, colorOf) {
    const cps = codePoints(text);
    // Per code point, the shortest span covering it wins (nested spans stay visible).
    const owner = new Array(cps.length).fill(-1);
    spans.forEach((s, i) => {
      for (let c = s.span.start; c < s.span.end && c < cps.length; ++c) {
        const current = owner[c];
        if (current < 0 || (spans[current].span.end - spans[current].span.start) > (s.span.end - s.span.start)) owner[c] = i;
      }
    });
    const nodes = [];
    let c = 0;
    while (c < cps.length) {
      const o = owner[c];
      let end = c + 1;
      while (end < cps.length && owner[end] === o) ++end;
      const piece = cps.slice(c, end).join('');
      if (o < 0) {
        nodes.push(document.createTextNode(piece));
      } else {
        const s = spans[o];
        const isEnd = end === s.span.end;
        nodes.push(el('mark', {class: 'span-mark', style: `--c: ${colorOf(s.name)}`, 'data-name': s.name,
                               'data-path': s.path, 'data-start': s.span.start, 'data-end': s.span.end,
                               'data-tag': isEnd ? s.name : null,
                               title: `${s.path}: ${s.span.text} [${s.span.start}, ${s.span.end}) p=${s.span.probability.toFixed(3)}`},
                       piece));
      }
      c = end;
    }
    return nodes;
  }

  function resultTree(extraction, colorOf) {
    const list = el('ul', {class: 'tree'});
    const names = Object.keys(extraction || {});
    if (names.length === 0) list.append(el('li', {class: 'empty'}, '（无结果 nothing found）'));
    for (const name of names) {
      const spans = extraction[name];
      const items = el('ul', {});
      if (!spans.length) items.append(el('li', {class: 'empty'}, '（无 none）'));
      for (const s of spans) {
        const hasOffsets = typeof s.start === 'number';
        const item = el('li', {class: 'tree-span'},
          el('span', {class: 'span-text', style: `--c: ${colorOf(name)}`}, s.text),
          hasOffsets ? el('span', {class: 'span-pos'}, ` [${s.start}, ${s.end})`) : el('span', {class: 'tag'}, '分类答案 answer'),
          el('span', {class: 'span-prob'}, ' p=' + s.probability.toFixed(3)));
        if (s.relations && Object.keys(s.relations).length) item.append(resultTree(s.relations, colorOf));
        items.append(item);
      }
      list.append(el('li', {},
        el('details', {open: true},
          el('summary', {}, el('span', {class: 'swatch', style: `background: ${colorOf(name)}`}), name,
            el('small', {}, ` (${spans.length})`)),
          items)));
    }
    return list;
  }

  function renderExtract(data, texts) {
    const out = $('ex-result');
    out.replaceChildren();
    const colors = new Map();
    const colorOf = (name) => {
      if (!colors.has(name)) colors.set(name, palette[colors.size % palette.length]);
      return colors.get(name);
    };
    data.results.forEach((extraction, i) => {
      const spans = collectSpans(extraction, '', []);
      const legend = el('div', {class: 'legend'});
      for (const name of Object.keys(extraction)) colorOf(name);
      for (const s of spans) colorOf(s.name);
      for (const [name, color] of colors) {
        const count = spans.filter((s) => s.name === name).length;
        legend.append(el('span', {class: 'legend-item'}, el('span', {class: 'swatch', style: `background: ${color}`}), `${name} ${count}`));
      }
      out.append(el('div', {class: 'card ex-card'},
        el('div', {class: 'card-head'}, '高亮 highlighted spans', legend),
        el('div', {class: 'highlighted-text'}, highlightSpans(texts[i], spans, colorOf)),
        el('div', {class: 'card-head'}, '结果树 result tree'),
        resultTree(extraction, colorOf)));
    });
    out.append(el('details', {class: 'raw-json'},
      el('summary', {}, '原始 JSON (raw response)'),
      el('pre', {}, JSON.stringify(data, null, 2))));
  }

  async function runExtract(task) {
    const text = $('ex-text').value;
    const body = {input: text, schema: parseSchema().schema, threshold: Number($('ex-threshold').value)};
    const result = await postJson('v1/extract', body);
    showLatency(task, result);
    if (!result.ok) {
      showServerError(task, result, () => ({label: '文本 text', text}));
      return;
    }
    renderExtract(result.data, [text]);
  }

  // ---- tasks, tabs and models ------------------------------------------------------------------

  const tasks = {
    classify: {prefix: 'cls', name: '分类', inputs: ['cls-text', 'cls-labels', 'cls-template', 'cls-multi'],
               check: checkClassify, run: runClassify, available: true, busy: false, touched: false},
    'fill-mask': {prefix: 'fm', name: '填空', inputs: ['fm-text', 'fm-topk', 'fm-attr'],
                  check: checkFillMask, run: runFillMask, available: true, busy: false, touched: false},
    extract: {prefix: 'ex', name: '抽取', inputs: ['ex-text', 'ex-schema', 'ex-threshold'],
              check: checkExtract, run: runExtract, available: true, busy: false, touched: false},
  };

  const validate = (task) => {
    const checks = task.check();
    renderChecks(task, checks, task.touched);
    return checks;
  };

  function selectTab(id, updateHash = true) {
    if (!Object.hasOwn(tasks, id) || !tasks[id].available) return;
    for (const key of Object.keys(tasks)) {
      const active = key === id;
      $('tab-' + key).setAttribute('aria-selected', active ? 'true' : 'false');
      $('tab-' + key).classList.toggle('active', active);
      $('panel-' + key).hidden = !active;
    }
    if (updateHash && location.hash !== '#' + id) history.replaceState(null, '', '#' + id);
  }

  async function submit(task) {
    task.touched = true;
    const checks = validate(task);
    if (checks.errors.length || task.busy || !task.available) return;
    task.busy = true;
    const run = $(task.prefix + '-run');
    run.disabled = true;
    run.classList.add('busy');
    clearServerError(task);
    $(task.prefix + '-result').classList.add('stale');
    try {
      await task.run(task);
    } finally {
      task.busy = false;
      run.classList.remove('busy');
      $(task.prefix + '-result').classList.remove('stale');
      validate(task);
    }
  }

  function setUnavailable(id, why) {
    const task = tasks[id];
    task.available = false;
    const tab = $('tab-' + id);
    tab.disabled = true;
    tab.classList.add('unavailable');
    tab.title = why;
    $(task.prefix + '-run').disabled = true;
  }

  async function loadModels() {
    const status = $('server-status');
    let info;
    try {
      const response = await fetch('v1/models');
      info = await response.json();
      if (!response.ok) throw new Error((info.error && info.error.message) || response.statusText);
    } catch (e) {
      status.className = 'server-status bad';
      status.textContent = '无法读取 /v1/models (cannot read the model list): ' + e.message;
      return;
    }
    const models = info.models || [];
    status.className = 'server-status ok';
    status.replaceChildren(el('span', {class: 'dot'}), '已加载 loaded: ',
      ...models.map((m) => el('span', {class: 'model-pill', title: `${m.path || ''}\n${m.architecture || ''}, ${m.layers} layers, hidden ${m.hidden_size}, backend ${m.backend}`},
        el('b', {}, m.name), ` ${m.architecture || ''}`)));
    const missing = [];
    const taskMap = info.tasks || {};
    for (const id of Object.keys(tasks)) {
      if (!taskMap[id]) {
        const why = `${tasks[id].name} 不可用：服务器没有加载适合 ${id} 的模型 (no model for ${id})`;
        setUnavailable(id, why);
        missing.push(why);
      }
    }
    const notice = $('tab-notice');
    if (missing.length) {
      notice.replaceChildren(...missing.map((m) => el('div', {}, m)),
        el('div', {class: 'hint'}, '启动服务器时用 --model NAME=PATH.tbw 加载模型 (start tinybert-server with --model NAME=PATH.tbw)'));
      notice.hidden = false;
    }
    const current = Object.keys(tasks).find((id) => $('tab-' + id).getAttribute('aria-selected') === 'true');
    if (!tasks[current].available) {
      const first = Object.keys(tasks).find((id) => tasks[id].available);
      if (first) selectTab(first);
      else $('panel-' + current).hidden = true;
    }
    for (const task of Object.values(tasks)) validate(task);
  }

  function setup() {
    for (const [id, task] of Object.entries(tasks)) {
      $('tab-' + id).addEventListener('click', () => selectTab(id));
      $(task.prefix + '-form').addEventListener('submit', (e) => {
        e.preventDefault();
        submit(task);
      });
      for (const input of task.inputs) {
        const node = $(input);
        const onEdit = () => {
          task.touched = true;
          validate(task);
        };
        node.addEventListener('input', onEdit);
        node.addEventListener('change', onEdit);
        if (node.tagName === 'TEXTAREA') {
          node.addEventListener('keydown', (e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              submit(task);
            }
          });
        }
      }
    }

    let classifyNext = 0;
    $('cls-example').addEventListener('click', () => {
      const ex = classifyExamples[classifyNext++ % classifyExamples.length];
      $('cls-text').value = ex.text;
      $('cls-labels').value = ex.labels;
      $('cls-template').value = '';
      $('cls-multi').checked = false;
      validate(tasks.classify);
    });
    let fillNext = 0;
    $('fm-example').addEventListener('click', () => {
      $('fm-text').value = fillMaskExamples[fillNext++ % fillMaskExamples.length];
      validate(tasks['fill-mask']);
    });
    $('fm-insert').addEventListener('click', () => {
      const box = $('fm-text');
      const at = box.selectionStart ?? box.value.length;
      const end = box.selectionEnd ?? at;
      box.value = box.value.slice(0, at) + '[MASK]' + box.value.slice(end);
      box.focus();
      box.setSelectionRange(at + 6, at + 6);
      tasks['fill-mask'].touched = true;
      validate(tasks['fill-mask']);
    });
    // The schema box grows with its JSON (4..16 rows).
    const fitSchemaBox = () => {
      const box = $('ex-schema');
      box.rows = Math.max(4, Math.min(16, box.value.split('\n').length + 1));
    };
    $('ex-schema').addEventListener('input', fitSchemaBox);
    let extractNext = 0;
    $('ex-example').addEventListener('click', () => {
      const ex = extractExamples[extractNext++ % extractExamples.length];
      $('ex-text').value = ex.text;
      $('ex-schema').value = formatSchema(ex.schema);
      fitSchemaBox();
      validate(tasks.extract);
    });
    for (const chip of document.querySelectorAll('[data-schema]')) {
      chip.addEventListener('click', () => {
        $('ex-schema').value = formatSchema(schemaExamples[chip.dataset.schema]);
        fitSchemaBox();
        tasks.extract.touched = true;
        validate(tasks.extract);
      });
    }

    const fromHash = location.hash.slice(1);
    selectTab(Object.hasOwn(tasks, fromHash) ? fromHash : 'classify', false);
    window.addEventListener('hashchange', () => selectTab(location.hash.slice(1), false));
    for (const task of Object.values(tasks)) validate(task);
    loadModels();
  }

  setup();
})();
