// Real-browser flow for the dashboards, driven by playwright-core in Debian's Chromium.
// Run by tests/api/browser.rs, which starts the portal, seeds a site with a day of readings and
// passes: node dashboards.cjs <base> <email> <password> <artifacts> <site id> <device id> <external id>
// Exits non-zero with a message on the first failed expectation; screenshots go to <artifacts>.
const { chromium } = require('playwright-core');

const [, , base, email, password, artifacts, site, device, externalId] = process.argv;

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

const text = (page, selector) => page.locator(selector).first().textContent();

async function signIn(page) {
  await page.goto(`${base}/login`);
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/`);
}

// Whether a canvas under `selector` has drawn pixels (not all transparent).
const drawnPixels = (page, selector) =>
  page.evaluate((sel) => {
    const canvas = document.querySelector(sel);
    if (!canvas) return 0;
    const ctx = canvas.getContext('2d');
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
    return n;
  }, selector);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.TAU_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // (The browser's own favicon request has no page of ours behind it.)
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) errors.push(`${m.text()} (${m.location().url})`);
    });
    await signIn(page);

    // 1. The Overview shows what the site draws now.
    const kw = `[data-field="site-${site}-kw"]`;
    expect((await text(page, kw)) === '4.00 kW', `the live figure is the newest reading: ${await text(page, kw)}`);
    await page.screenshot({ path: `${artifacts}/10-overview.png`, fullPage: true });

    // 2. A reading arrives through the ingest API (with a key made in Settings → API keys) and the
    //    figure changes without a reload.
    const keys = await context.newPage();
    await keys.goto(`${base}/settings/api-keys`);
    await keys.fill('#name', 'browser test');
    await keys.getByRole('button', { name: 'Create key' }).click();
    const key = (await keys.locator('code.secret').textContent()).trim();
    await keys.close();
    const marker = await page.evaluate(() => { window.__notReloaded = true; return true; });
    expect(marker, 'marker set');
    const res = await page.request.post(`${base}/api/ingest`, {
      headers: { Authorization: `Bearer ${key}` },
      // A full three-phase reading (big numbers: the 375 px device page must still fit them).
      data: { measurements: [{
        externalId, time: new Date().toISOString(), pTotal: 9250, p1: 3083.3, p2: 3083.3, p3: 3083.4,
        v1: 230.1, v2: 231.2, v3: 229.8, v12: 399.9, v23: 400.1, v31: 398.7, i1: 1234.5, i2: 1198.2, i3: 1301.7, iN: 12.3,
        q1: -1234.5, q2: -1187.2, q3: -1301.9, qTotal: -3723.6, s1: 123456.7, s2: 123456.7, s3: 123456.7, sTotal: 370370.1,
        pf1: 0.987, pf2: 0.991, pf3: 0.979, pfTotal: 0.986, frequency: 50.01,
      }] },
    });
    expect(res.ok(), `ingest answered ${res.status()}: ${await res.text()}`);
    await page.waitForFunction((sel) => document.querySelector(sel).textContent === '9.25 kW', kw, { timeout: 20000 });
    expect(await page.evaluate(() => window.__notReloaded === true), 'the page was not reloaded');
    await page.screenshot({ path: `${artifacts}/11-overview-updated.png`, fullPage: true });

    // 3. The device chart draws from the series and the range picker changes its data.
    await page.goto(`${base}/devices/${device}`);
    const chart = '.chart[data-series]';
    await page.waitForSelector(`${chart}[data-points]`);
    const points = Number(await page.getAttribute(chart, 'data-points'));
    expect(points >= 280 && points <= 290, `a day in 5-minute buckets: ${points} points`);
    expect(Number(await page.getAttribute(chart, 'data-bucket-seconds')) === 300, '5-minute buckets');
    expect((await drawnPixels(page, `${chart} canvas`)) > 500, 'the canvas has the lines drawn');
    expect(await page.locator(`${chart} svg.fallback`).isHidden(), 'the SVG fallback gives way to the canvas');
    // A tooltip follows the cursor.
    await page.locator(`${chart} .u-over`).scrollIntoViewIfNeeded();
    const box = await page.locator(`${chart} .u-over`).boundingBox();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2);
    await page.mouse.move(box.x + box.width * 0.62, box.y + box.height / 2, { steps: 4 });
    try {
      await page.waitForSelector(`${chart} .tooltip:not([hidden])`, { timeout: 5000 });
    } catch (e) {
      const state = await page.evaluate((sel) => ({
        cursor: document.querySelector(sel).getAttribute('data-cursor'),
        tooltip: document.querySelector(sel + ' .tooltip')?.outerHTML,
      }), chart);
      throw new Error(`no tooltip: ${JSON.stringify(state)}`);
    }
    expect((await text(page, `${chart} .tooltip`)).includes('kW'), 'the tooltip shows the values with their unit');
    await page.screenshot({ path: `${artifacts}/12-device-24h.png`, fullPage: true });
    await page.getByRole('link', { name: '7 days' }).click();
    await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('data-bucket-seconds') === '1800', chart);
    expect((await page.locator('h2', { hasText: 'last 7 days, per 30 minutes' }).count()) === 1, 'the title says the range');
    await page.selectOption('#q', 'v');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForSelector(`${chart}[data-points]`);
    expect((await page.locator('h2', { hasText: 'Voltage' }).count()) === 1, 'the quantity picker changes the chart');
    // Drag to zoom: finer buckets are fetched.
    await page.goto(`${base}/devices/${device}?range=24h`);
    await page.waitForSelector(`${chart}[data-points]`);
    await page.locator(`${chart} .u-over`).scrollIntoViewIfNeeded();
    const over = await page.locator(`${chart} .u-over`).boundingBox();
    await page.mouse.move(over.x + over.width * 0.70, over.y + 20);
    await page.mouse.down();
    await page.mouse.move(over.x + over.width * 0.78, over.y + 20, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction((sel) => Number(document.querySelector(sel).getAttribute('data-bucket-seconds')) < 300, chart);
    await page.screenshot({ path: `${artifacts}/13-device-zoomed.png`, fullPage: true });

    // 3b. The site page: the day and month bars draw from the energy, today against yesterday too.
    await page.goto(`${base}/sites/${site}`);
    const bars = '.chart.bars[data-chart]';
    await page.waitForSelector(`${bars}[data-points]`);
    expect(Number(await page.getAttribute(bars, 'data-points')) >= 28, 'a bar slot per day of the month');
    expect(Number(await page.getAttribute(bars, 'data-values')) === new Date().getUTCDate(), 'the days gone have bars, the rest none');
    await page.locator(`${bars} canvas`).first().scrollIntoViewIfNeeded();
    expect((await drawnPixels(page, `${bars} canvas`)) > 200, 'the day bars are drawn');
    expect(await page.locator(`${bars} .table-wrap`).first().isHidden(), 'the table gives way to the chart');
    const months = page.locator('.chart.bars[data-chart]').nth(1);
    expect(Number(await months.getAttribute('data-points')) === 12, 'twelve month slots');
    expect(Number(await page.locator('#today .chart').getAttribute('data-values')) > 0, 'today against yesterday has data');
    expect((await drawnPixels(page, '#today .chart canvas')) > 200, 'today against yesterday is drawn');
    expect(Number(await page.locator('#compare .chart').getAttribute('data-values')) > 250, 'the device comparison has data');
    // The day bars' tooltip says the day and its energy.
    const barOver = await page.locator(`${bars} .u-over`).first().boundingBox();
    await page.mouse.move(barOver.x + barOver.width * 0.02, barOver.y + barOver.height / 2);
    await page.mouse.move(barOver.x + barOver.width * 0.03, barOver.y + barOver.height / 2, { steps: 3 });
    await page.waitForSelector(`${bars} .tooltip:not([hidden])`, { timeout: 5000 });
    expect((await text(page, `${bars} .tooltip`)).includes('kWh'), 'the bar tooltip shows kWh');
    await page.screenshot({ path: `${artifacts}/13b-site.png`, fullPage: true });

    // 4. 375 px wide: nothing scrolls sideways, and the key figures of the Overview, the site
    //    page and the device page (and their tables) are on screen without scrolling a table.
    const phone = await browser.newContext({ viewport: { width: 375, height: 740 }, storageState: await context.storageState() });
    const small = await phone.newPage();
    const keyFigures = {
      '/': ['.figures dd', `[data-field="site-${site}-kw"]`],
      [`/sites/${site}`]: ['#today .figures dd', '#energy h3', '#compare h2', 'h1'],
      [`/devices/${device}`]: ['h1 .badge', '.card table td', '#chart h2'],
    };
    for (const [path, selectors] of Object.entries(keyFigures)) {
      await small.goto(`${base}${path}`);
      await small.waitForLoadState('load');
      if (path !== '/') await small.waitForSelector('.chart[data-points]');
      const layout = await small.evaluate((selectors) => {
        const width = window.innerWidth;
        const off = [];
        for (const sel of selectors) {
          const found = document.querySelectorAll(sel);
          if (!found.length) off.push(`${sel}: missing`);
          found.forEach((el) => {
            const r = el.getBoundingClientRect();
            if (r.left < 0 || r.right > width + 0.5) off.push(`${sel} "${el.textContent.trim().slice(0, 40)}" at ${Math.round(r.left)}–${Math.round(r.right)}`);
          });
        }
        // A table that scrolls inside its wrapper hides figures sideways too.
        document.querySelectorAll('.table-wrap').forEach((w) => {
          if (w.offsetParent && w.scrollWidth > w.clientWidth + 1) off.push(`a table scrolls: ${w.scrollWidth} > ${w.clientWidth} (${w.textContent.trim().slice(0, 40)})`);
        });
        document.querySelectorAll('.chart canvas').forEach((c) => {
          const r = c.getBoundingClientRect();
          if (r.right > width + 0.5) off.push(`a chart is ${Math.round(r.right)} px wide`);
        });
        return { scrollWidth: document.documentElement.scrollWidth, off };
      }, selectors);
      expect(layout.scrollWidth <= 375, `${path} at 375 px scrolls sideways: ${layout.scrollWidth} px wide`);
      expect(layout.off.length === 0, `${path} at 375 px: ${layout.off.join('; ')}`);
      await small.screenshot({ path: `${artifacts}/14-375${path.replace(/\//g, '-')}.png`, fullPage: true });
    }
    await phone.close();

    // 5. A wall display link: created, opened without a session, revoked.
    await page.goto(`${base}/sites/${site}/wall-displays`);
    await page.fill('#name', 'Control room');
    await page.getByRole('button', { name: 'Create link' }).click();
    const link = (await page.locator('#wall-link').textContent()).trim();
    expect(link.startsWith(`${base}/wall/wall_`), `the link: ${link}`);
    const screen = await (await browser.newContext({ viewport: { width: 1920, height: 1080 } })).newPage();
    await screen.goto(link);
    expect((await text(screen, kw)) === '9.25 kW', 'the wall display shows the site now');
    expect((await screen.locator('a[href="/settings/users"], form[action="/logout"]').count()) === 0, 'read-only');
    await screen.screenshot({ path: `${artifacts}/16-wall.png`, fullPage: true });
    await page.getByRole('button', { name: 'Revoke Control room' }).click();
    await page.getByText('The wall display link was revoked').waitFor();
    await screen.waitForSelector('[data-live-state="stopped"]', { timeout: 20000 });
    expect((await text(screen, '[data-live-status]')).includes('revoked'), 'the screen says the link was revoked');
    const again = await screen.goto(link);
    expect(again.status() === 404, `a revoked link is refused: ${again.status()}`);

    expect(errors.length === 0, `no script errors: ${errors.join('; ')}`);
    console.log('dashboards flow passed');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
