// Drives tinybert-server's web page in headless Chromium: types into each tab, runs it, checks the
// rendered results and the live input checks, and saves one screenshot per tab.
// usage: node browser_test.mjs BASE_URL SCREENSHOT_DIR     (the server must have bge, mlm and uie loaded)
// Exit 0 on success, 1 with "FAIL: <step>: <why>" otherwise.
import {mkdirSync} from 'node:fs';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const [baseUrl, shotDir] = process.argv.slice(2);
if (!baseUrl || !shotDir) {
  console.error('usage: node browser_test.mjs BASE_URL SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shotDir, {recursive: true});
const base = baseUrl.replace(/\/+$/, '');
const timeout = 30000;

class Failure extends Error {}
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

let currentStep = '(start)';
async function step(name, fn) {
  currentStep = name;
  const started = Date.now();
  await fn();
  console.log(`ok - ${name} (${Date.now() - started} ms)`);
}

// Everything that went wrong in the page: console errors, uncaught exceptions, failed requests,
// HTTP errors. An expected HTTP error is allowed while `expectHttpError` names its path.
const problems = [];
let expectHttpError = null;
function watch(page) {
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (expectHttpError && /status of 4\d\d/.test(text)) return;
    problems.push(`console error: ${text}`);
  });
  page.on('pageerror', (e) => problems.push(`page exception: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const path = new URL(r.url()).pathname;
    if (expectHttpError && path === expectHttpError) return;
    problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

try {
  const context = await browser.newContext({viewport: {width: 1180, height: 900}, locale: 'zh-CN'});
  context.setDefaultTimeout(timeout);
  const page = await context.newPage();
  watch(page);

  // Fails the step when a locator's text does not match within the timeout.
  const expectText = async (locator, pattern, what) => {
    try {
      await locator.filter({hasText: pattern}).first().waitFor({state: 'visible', timeout});
    } catch {
      const actual = (await locator.allTextContents()).join(' | ');
      throw new Failure(`${what}: expected ${pattern}, page shows "${actual}"`);
    }
  };
  const expectEnabled = async (selector, enabled, what) => {
    await page.waitForFunction(([s, e]) => document.querySelector(s).disabled === !e, [selector, enabled], {timeout})
      .catch(() => { throw new Failure(`${what}: ${selector} should be ${enabled ? 'enabled' : 'disabled'}`); });
  };
  // Clicks a tab and checks that its panel, and only its panel, is shown.
  const openTab = async (id) => {
    await page.locator(`#tab-${id}`).click();
    await page.locator(`#panel-${id}`).waitFor({state: 'visible'});
    for (const other of ['classify', 'fill-mask', 'extract']) {
      if (other !== id) check(await page.locator(`#panel-${other}`).isHidden(), `panel ${other} is visible on tab ${id}`);
    }
    check((await page.locator(`#tab-${id}`).getAttribute('aria-selected')) === 'true', `tab ${id} not selected`);
  };
  // Server time (latency_ms, absent from error bodies) and the browser's round trip.
  const latencyShown = async (prefix, withServerTime = true) => {
    const text = await page.locator(`#${prefix}-latency`).textContent();
    check((!withServerTime || /服务器\s*[\d.]+ ms/.test(text)) && /往返\s*[\d.]+ ms/.test(text),
          `latency line of ${prefix}: "${text}"`);
  };

  await step('page loads and lists the models', async () => {
    const response = await page.goto(base + '/');
    check(response.ok(), `GET / answered ${response.status()}`);
    check((response.headers()['content-type'] || '').startsWith('text/html'), 'GET / is not text/html');
    await page.locator('#server-status.ok').waitFor();
    for (const name of ['bge', 'mlm', 'uie']) {
      await expectText(page.locator('#server-status .model-pill'), name, 'model list');
    }
    for (const tab of ['classify', 'fill-mask', 'extract']) {
      check(!(await page.locator(`#tab-${tab}`).isDisabled()), `tab ${tab} is disabled although its model is loaded`);
    }
    check(await page.locator('#tab-notice').isHidden(), 'the no-model notice is shown although all models are loaded');
  });

  // ---- 分类 ----------------------------------------------------------------------------------
  await step('classify: live check of an empty label', async () => {
    await openTab('classify');
    await page.locator('#cls-text').fill('国足在世界杯预选赛中以二比零战胜对手，球迷们欢呼雀跃。');
    await page.locator('#cls-labels').pressSequentially('体育，');
    await expectText(page.locator('#cls-msg .msg-ok'), '1 个标签', 'a trailing separator is not an empty label');
    await page.locator('#cls-labels').pressSequentially('，财经');
    await expectText(page.locator('#cls-msg .msg-error'), '第 2 个标签为空', 'empty-label message');
    await expectEnabled('#cls-run', false, 'run button with an empty label');
  });

  await step('classify: bar chart, best label', async () => {
    await page.locator('#cls-labels').fill('');
    await page.locator('#cls-labels').pressSequentially('体育，财经，科技，娱乐');
    await expectEnabled('#cls-run', true, 'run button with valid labels');
    check((await page.locator('#cls-msg .msg-error').count()) === 0, 'a validation error is still shown');
    await page.locator('#cls-run').click();
    await page.locator('#cls-result .bar-row').nth(3).waitFor();
    const rows = await page.locator('#cls-result .bar-row').evaluateAll((nodes) => nodes.map((n) => ({
      label: n.dataset.label, score: Number(n.dataset.score),
      width: parseFloat(n.querySelector('.bar-fill').style.width), shown: n.querySelector('.bar-score').textContent,
    })));
    check(rows.length === 4, `expected 4 bars, got ${rows.length}`);
    check(rows[0].label === '体育', `best label: expected 体育, got ${rows[0].label} (${JSON.stringify(rows)})`);
    const sum = rows.reduce((s, r) => s + r.score, 0);
    check(Math.abs(sum - 1) < 1e-3, `single-label scores sum to ${sum}`);
    for (const r of rows) {
      check(Math.abs(r.width - 100 * r.score) < 0.1, `bar width ${r.width}% for score ${r.score}`);
      check(/^\d+\.\d%$/.test(r.shown), `score text "${r.shown}"`);
    }
    check(rows.every((r, i) => i === 0 || rows[i - 1].score >= r.score), 'bars are not sorted by score');
    await expectText(page.locator('#cls-result .best-label'), '体育', 'verdict');
    await latencyShown('cls');
  });

  await step('classify: example button', async () => {
    await page.locator('#cls-example').click();
    check((await page.locator('#cls-text').inputValue()).length > 0, 'example filled no text');
    await page.locator('#cls-run').click();
    await expectText(page.locator('#cls-result .card-text'), '国足', 'example result');
    await page.screenshot({path: join(shotDir, 'classify.png'), fullPage: true});
  });

  // ---- 填空 ----------------------------------------------------------------------------------
  await step('fill-mask: live checks of [MASK] syntax', async () => {
    await openTab('fill-mask');
    const box = page.locator('#fm-text');
    await box.pressSequentially('北京是中国的首[MASK');
    await expectText(page.locator('#fm-msg .msg-error'), /第 1 行第 8 个字.*不配对/, 'unbalanced [MASK message');
    await expectEnabled('#fm-run', false, 'run button with an unbalanced [MASK');
    await box.fill('北京是中国的首[mask]。');
    await expectText(page.locator('#fm-msg .msg-error'), '不是 [MASK]', 'lower-case [mask] message');
    await box.fill('北京是中国的首都。');
    await expectText(page.locator('#fm-msg .msg-error'), '没有 [MASK]', 'no-mask message');
    await box.fill('北京是中国的首');
    await page.locator('#fm-insert').click();
    check((await box.inputValue()) === '北京是中国的首[MASK]', `insert [MASK] gave "${await box.inputValue()}"`);
    await expectEnabled('#fm-run', true, 'run button with a balanced [MASK]');
  });

  await step('fill-mask: server error shown next to the input', async () => {
    // 600 characters are more tokens than the model takes: only the server can tell.
    await page.locator('#fm-text').fill('[MASK]' + '好'.repeat(600));
    expectHttpError = '/v1/fill-mask';
    await page.locator('#fm-run').click();
    await page.locator('#fm-error').waitFor({state: 'visible'});
    await page.locator('#fm-run:not(.busy)').waitFor();
    expectHttpError = null;
    const text = await page.locator('#fm-error').textContent();
    check(/^400 invalid_request: .*too long/.test(text), `error box: "${text}"`);
    check(/第 1 行 line 1 · 位置 position \d+/.test(text), `error box names no line/position: "${text}"`);
    await latencyShown('fm', false);
  });

  await step('fill-mask: top-5 tables and attributed context', async () => {
    const box = page.locator('#fm-text');
    await box.fill('');
    await box.pressSequentially('《红楼梦》的作者是曹[MASK]芹；你读过吗？');
    await box.press('Enter');
    await box.pressSequentially('学而时习之，不亦[MASK]乎？有朋自远方来，不亦乐乎？');
    await box.press('Enter');
    await box.pressSequentially('中国的首都是[MASK][MASK]。');
    await expectText(page.locator('#fm-msg .msg-ok'), '3 行 (lines), 4 个 [MASK]', 'line count note');
    await page.locator('#fm-attr').fill('5');
    await page.locator('#fm-run').click();
    await page.locator('#fm-result .fm-card').nth(2).waitFor();
    check(await page.locator('#fm-error').isHidden(), 'the old error box is still shown');
    const cards = page.locator('#fm-result .fm-card');
    check((await cards.count()) === 3, `expected 3 result cards, got ${await cards.count()}`);
    const tables = await page.locator('#fm-result .fm-card').evaluateAll((cardNodes) => cardNodes.map((card) =>
      Array.from(card.querySelectorAll('.mask-table')).map((t) => Array.from(t.querySelectorAll('tbody tr')).map((tr) => ({
        token: tr.querySelector('.token').textContent, prob: tr.querySelector('.prob-value').textContent,
      })))));
    check(tables.map((t) => t.length).join(',') === '1,1,2', `masks per card: ${tables.map((t) => t.length)}`);
    for (const table of tables.flat()) {
      check(table.length === 5, `a mask table has ${table.length} rows, expected 5`);
      for (const row of table) check(/^\d+\.\d%$/.test(row.prob), `probability text "${row.prob}"`);
      const probs = table.map((r) => parseFloat(r.prob));
      check(probs.every((p, i) => i === 0 || probs[i - 1] >= p), `probabilities not sorted: ${probs}`);
    }
    // demo-mlm's reference outputs: 曹雪芹 (p 0.615), 不亦乐乎 (p 0.747).
    check(tables[0][0][0].token === '雪', `top token of 曹[MASK]芹: ${tables[0][0][0].token}`);
    check(tables[1][0][0].token === '乐', `top token of 不亦[MASK]乎: ${tables[1][0][0].token}`);
    check(parseFloat(tables[1][0][0].prob) > 50, `p(乐) = ${tables[1][0][0].prob}`);
    // Attributed context: highlighted tokens inside the text, stronger colour for larger weights.
    for (let i = 0; i < 3; ++i) {
      const card = cards.nth(i);
      const attrs = await card.locator('.masked-text .attr').evaluateAll((nodes) => nodes.map((n) => ({
        text: n.textContent, weight: Number(n.dataset.weight), alpha: Number(/rgba\([^)]*,\s*([\d.]+)\)/.exec(n.style.backgroundColor)?.[1] ?? 1),
      })));
      check(attrs.length >= 1 && attrs.length <= 5, `card ${i + 1}: ${attrs.length} highlighted context tokens`);
      const byWeight = [...attrs].sort((a, b) => b.weight - a.weight);
      check(byWeight[0].alpha >= byWeight[byWeight.length - 1].alpha, `card ${i + 1}: highlight intensity does not follow weight`);
      const text = await card.locator('.masked-text').textContent();
      check(!text.includes('[MASK][MASK]') || i === 2, `card ${i + 1} text "${text}"`);
    }
    const firstText = await cards.nth(0).locator('.masked-text').textContent();
    check(firstText === '《红楼梦》的作者是曹[MASK]芹；你读过吗？', `rendered text changed: "${firstText}"`);
    check((await cards.nth(0).locator('.mask-chip').getAttribute('data-top')) === '雪', 'mask chip shows no top token');
    // Two masks: clicking the second table moves the highlight to the second mask.
    const third = cards.nth(2);
    check((await third.locator('.mask-chip').count()) === 2, 'adjacent masks are not two chips');
    await third.locator('.mask-table').nth(1).click();
    await third.locator('.mask-chip.active[data-mask="1"]').waitFor();
    check((await third.locator('.mask-table.active').getAttribute('data-mask')) === '1', 'second table not active');
    await latencyShown('fm');
    await page.screenshot({path: join(shotDir, 'fill-mask.png'), fullPage: true});
  });

  // ---- 抽取 ----------------------------------------------------------------------------------
  await step('extract: live check of invalid schema JSON', async () => {
    await openTab('extract');
    await page.locator('#ex-text').pressSequentially('张三在北京大学工作，他是一名教授。');
    const schema = page.locator('#ex-schema');
    await schema.pressSequentially('["人名", "职位"');
    await expectText(page.locator('#ex-msg .msg-error'), /JSON 无效.*第 1 行第 12 列.*不完整/, 'invalid JSON message');
    await expectEnabled('#ex-run', false, 'run button with invalid JSON');
    await schema.fill('["人名",\n "职位",]');
    await expectText(page.locator('#ex-msg .msg-error'), /第 2 行第 7 列.*多余的逗号/, 'trailing-comma message');
    await schema.fill('["人名", ""]');
    await expectText(page.locator('#ex-msg .msg-error'), '名称为空', 'empty-name message');
    await schema.fill('{"人名": 3}');
    await expectText(page.locator('#ex-msg .msg-error'), '$.人名', 'bad child message');
    for (const example of ['entities', 'relation', 'classification']) {
      await page.locator(`[data-schema="${example}"]`).click();
      await expectText(page.locator('#ex-msg .msg-ok'), '结构有效', `example schema ${example}`);
      JSON.parse(await schema.inputValue());
    }
    await schema.fill('');
    await schema.pressSequentially('["人名", "职位"]');
    await expectEnabled('#ex-run', true, 'run button with a valid schema');
  });

  await step('extract: highlighted spans, result tree, raw JSON', async () => {
    await page.locator('#ex-run').click();
    await page.locator('#ex-result .span-mark').first().waitFor();
    const marks = await page.locator('#ex-result .highlighted-text .span-mark').evaluateAll((nodes) => nodes.map((n) => ({
      name: n.dataset.name, text: n.textContent, start: Number(n.dataset.start), end: Number(n.dataset.end),
    })));
    // demo-uie's reference outputs for this text: 人名 张三 [0, 2), 职位 教授 [14, 16).
    const find = (name, text) => marks.find((m) => m.name === name && m.text === text);
    const person = find('人名', '张三');
    check(person && person.start === 0 && person.end === 2, `人名 张三 not highlighted at [0, 2): ${JSON.stringify(marks)}`);
    const title = find('职位', '教授');
    check(title && title.start === 14 && title.end === 16, `职位 教授 not highlighted at [14, 16): ${JSON.stringify(marks)}`);
    const shown = await page.locator('#ex-result .highlighted-text').textContent();
    check(shown === '张三在北京大学工作，他是一名教授。', `highlighted text changed: "${shown}"`);
    const summaries = await page.locator('#ex-result .tree summary').allTextContents();
    check(summaries.some((s) => s.startsWith('人名')) && summaries.some((s) => s.startsWith('职位')), `tree: ${summaries}`);
    await page.locator('#ex-result .tree summary').first().click();
    check(!(await page.locator('#ex-result .tree details').first().evaluate((d) => d.open)), 'tree node did not collapse');
    await page.locator('#ex-result .tree summary').first().click();
    await page.locator('#ex-result .raw-json summary').click();
    const raw = JSON.parse(await page.locator('#ex-result .raw-json pre').textContent());
    check(raw.model && Array.isArray(raw.results) && typeof raw.latency_ms === 'number', 'raw JSON lacks model/results/latency_ms');
    check(raw.results[0]['人名'].some((s) => s.text === '张三'), 'raw JSON lacks 张三');
    await latencyShown('ex');
    await page.screenshot({path: join(shotDir, 'extract.png'), fullPage: true});
  });

  await step('extract: relation schema gives a nested tree', async () => {
    await page.locator('[data-schema="relation"]').click();
    check(JSON.stringify(JSON.parse(await page.locator('#ex-schema').inputValue())) === '{"人名":["职位","组织机构"]}',
          'relation example schema changed');
    await page.locator('#ex-run').click();
    // demo-uie on this text: 人名 张三 with the relation 职位 教授 [14, 16).
    await page.locator('#ex-result .span-mark[data-path="人名 › 职位"]').first().waitFor();
    const nested = await page.locator('#ex-result .tree .tree-span .tree summary').allTextContents();
    check(nested.some((s) => s.startsWith('职位')), `no nested 职位 under 张三: ${nested}`);
    const relationMark = page.locator('#ex-result .span-mark[data-path="人名 › 职位"]').first();
    check((await relationMark.textContent()) === '教授', `relation span: ${await relationMark.textContent()}`);
    await page.screenshot({path: join(shotDir, 'extract-relation.png'), fullPage: true});
  });

  await step('extract: example button', async () => {
    await page.locator('#ex-example').click();
    await page.locator('#ex-run').click();
    await page.locator('#ex-result .span-mark').first().waitFor();
  });

  // The same tab on a SiameseUIE model (ModelScope's layout, tests/data/modelscope): its answers
  // come in UIE's nested shape, so the page shows them alike. The requests name the model.
  await step('extract: a SiameseUIE model (ModelScope layout)', async () => {
    await page.route('**/v1/extract', async (route) => {
      const body = JSON.parse(route.request().postData());
      await route.continue({postData: JSON.stringify({...body, model: 'siamese'})});
    });
    await page.locator('#ex-text').fill('在北京冬奥会自由式滑雪女子大跳台决赛中，中国选手谷爱凌以188.25分获得金牌。');
    await page.locator('#ex-schema').fill('{"人物": {"比赛项目": null, "参赛地点": null}}');
    await expectText(page.locator('#ex-msg .msg-ok'), '结构有效', 'SiameseUIE schema');
    // (an earlier step's request may still be answering: wait for this one's)
    const ours = (r) => r.url().endsWith('/v1/extract') && (r.request().postData() || '').includes('谷爱凌');
    const [response] = await Promise.all([page.waitForResponse(ours), page.locator('#ex-run').click()]);
    const answer = await response.json();
    check(answer.model === 'siamese' && answer.results, `answer: ${JSON.stringify(answer).slice(0, 400)}`);
    // The tiny random model's golden answers (tools/modelscope): 人物 中， [18, 20) and 以 [27, 28),
    // each with its 比赛项目 / 参赛地点 relations (on the same characters: the tree shows them).
    await page.locator('#ex-result .highlighted-text .span-mark[data-name="人物"]').first().waitFor();
    const nested = await page.locator('#ex-result .tree .tree-span .tree summary').allTextContents();
    check(nested.some((s) => s.startsWith('比赛项目')) && nested.some((s) => s.startsWith('参赛地点')),
          `no nested 比赛项目 / 参赛地点: ${nested}`);
    const marks = await page.locator('#ex-result .highlighted-text .span-mark').evaluateAll((nodes) => nodes.map((n) => ({
      name: n.dataset.name, text: n.textContent, start: Number(n.dataset.start), end: Number(n.dataset.end),
    })));
    const person = marks.find((m) => m.name === '人物' && m.text === '中，');
    check(person && person.start === 18 && person.end === 20, `人物 中， not highlighted at [18, 20): ${JSON.stringify(marks)}`);
    await page.locator('#ex-result .raw-json summary').click();
    const raw = JSON.parse(await page.locator('#ex-result .raw-json pre').textContent());
    check(raw.model === 'siamese' && raw.format === 'uie', `raw JSON: model ${raw.model}, format ${raw.format}`);
    await page.screenshot({path: join(shotDir, 'extract-siamese.png'), fullPage: true});
    await page.unroute('**/v1/extract');
  });

  await step('no console errors or failed requests', async () => {
    check(problems.length === 0, problems.join('\n  '));
  });

  // A server without a UIE model: GET /v1/models answered with extract: null (rewritten here).
  await step('a task without a model disables its tab', async () => {
    const page2 = await context.newPage();
    watch(page2);
    await page2.route('**/v1/models', async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      body.models = body.models.filter((m) => m.name !== 'uie');
      body.tasks.extract = null;
      await route.fulfill({response, json: body});
    });
    await page2.goto(base + '/#extract');
    await page2.locator('#server-status.ok').waitFor();
    check(await page2.locator('#tab-extract').isDisabled(), 'tab 抽取 is not disabled');
    const notice = await page2.locator('#tab-notice').textContent();
    check(/抽取 不可用/.test(notice), `notice: "${notice}"`);
    check(await page2.locator('#panel-extract').isHidden(), 'the extract panel is still shown');
    check(await page2.locator('#panel-classify').isVisible(), 'the page did not fall back to the classify tab');
    await page2.screenshot({path: join(shotDir, 'no-uie-model.png')});
    await page2.close();
    check(problems.length === 0, problems.join('\n  '));
  });

  console.log(`PASS: web page, screenshots in ${shotDir}`);
} catch (e) {
  console.log(`FAIL: ${currentStep}: ${e instanceof Failure ? e.message : e.stack || e}`);
  if (problems.length) console.log('page problems:\n  ' + problems.join('\n  '));
  process.exitCode = 1;
} finally {
  await browser.close();
}
