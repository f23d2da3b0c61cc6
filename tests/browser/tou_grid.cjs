// The TOU grid editor in Chromium, driven by playwright-core: each cell shows its period's colour
// and letter, a drag and a shift-click paint ranges, the keyboard moves and sets periods, the
// painted grid is what is saved, and without JavaScript the form's selects still work and
// colour their cells. Run by tests/api/browser.rs: node tou_grid.cjs <base> <email> <password> <artifacts>
const { chromium } = require('playwright-core');

const [, , base, email, password, artifacts] = process.argv;

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

const PEAK = 'rgb(194, 65, 12)';
const STANDARD = 'rgb(250, 204, 21)';
const OFF_PEAK = 'rgb(14, 116, 144)';

// The cell of season 0, `dayType`, `hour`, and what it shows.
const cell = (page, dayType, hour) => page.locator(`td:has(> select[name="grid_0_${dayType}_${hour}"])`);
async function state(page, dayType, hour) {
  return page.evaluate(({ dayType, hour }) => {
    const select = document.querySelector(`select[name="grid_0_${dayType}_${hour}"]`);
    const td = select.closest('td');
    const letter = td.querySelector('.tou-letter');
    return { value: select.value, letter: letter ? letter.textContent : '', colour: getComputedStyle(td).backgroundColor };
  }, { dayType, hour });
}
async function row(page, dayType) {
  const out = [];
  for (let h = 0; h < 24; h++) out.push((await state(page, dayType, h)).value);
  return out;
}
const expected = (spans) => {
  const out = Array(24).fill('off_peak');
  for (const [from, to, p] of spans) for (let h = from; h <= to; h++) out[h] = p;
  return out;
};

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.TAU_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/login`);
    await page.fill('#email', email);
    await page.fill('#password', password);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/`);

    // A municipality, then a new TOU tariff.
    await page.goto(`${base}/settings/rates`);
    await page.fill('#name', 'Grid town');
    await page.fill('#currency', 'ZAR');
    await page.fill('#vat_percent', '15');
    await page.getByRole('button', { name: 'Add municipality' }).click();
    await page.getByRole('link', { name: 'Add a tariff' }).click();
    await page.fill('#name', 'Painted TOU');
    await page.fill('#effective_from', '2026-01-01');
    await page.check('input[name="energy_kind"][value="tou"]');
    await page.fill('input[name="season_0_name"]', 'All year');
    await page.fill('input[name="season_0_from"]', '01-01');
    await page.fill('input[name="season_0_to"]', '12-31');
    await page.fill('input[name="season_0_peak"]', '4.10');
    await page.fill('input[name="season_0_standard"]', '2.20');
    await page.fill('input[name="season_0_off_peak"]', '1.20');

    // 1. Every cell shows its period: letter and colour; the selects are hidden, the brush shown.
    let s = await state(page, 'weekday', 0);
    expect(s.letter === 'O' && s.colour === OFF_PEAK, `an off-peak cell: ${JSON.stringify(s)}`);
    expect(await page.locator('select[name="grid_0_weekday_0"]').isHidden(), 'the select gives way to the painted cell');
    const toolbar = page.getByRole('toolbar', { name: 'Season 1: paint with' });
    expect(await toolbar.isVisible(), 'the brush toolbar is shown');

    // 2. A drag with the Peak brush paints weekday 07:00–09:00 and Saturday of the same hours.
    await toolbar.getByRole('button', { name: 'P Peak' }).click();
    const a = await cell(page, 'weekday', 7).boundingBox();
    const b = await cell(page, 'saturday', 9).boundingBox();
    await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
    await page.mouse.down();
    await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2, { steps: 8 });
    await page.mouse.up();
    s = await state(page, 'weekday', 8);
    expect(s.value === 'peak' && s.letter === 'P' && s.colour === PEAK, `a dragged cell: ${JSON.stringify(s)}`);
    expect(JSON.stringify(await row(page, 'saturday')) === JSON.stringify(expected([[7, 9, 'peak']])), 'the drag is a rectangle');
    expect((await state(page, 'sunday', 8)).value === 'off_peak', 'the row below the drag is untouched');

    // 3. Shift-click: Standard from weekday 10:00 (a click) to 16:00 (a shift-click).
    await toolbar.getByRole('button', { name: 'S Standard' }).click();
    expect((await toolbar.getByRole('button', { name: 'S Standard' }).getAttribute('aria-pressed')) === 'true', 'the brush is pressed');
    await cell(page, 'weekday', 10).click();
    await cell(page, 'weekday', 16).click({ modifiers: ['Shift'] });
    expect(JSON.stringify(await row(page, 'weekday')) === JSON.stringify(expected([[7, 9, 'peak'], [10, 16, 'standard']])),
      `the shift-click painted the range: ${await row(page, 'weekday')}`);
    s = await state(page, 'weekday', 12);
    expect(s.letter === 'S' && s.colour === STANDARD, `a standard cell: ${JSON.stringify(s)}`);

    // 4. Keyboard: from Sunday 00:00, right twice, P; Shift+Right twice paints peak to 04:00;
    //    Down to "Sunday" stays in the grid; End, then O sets 23:00 off-peak again.
    await cell(page, 'weekday', 16).focus();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Home');
    const focused = await page.evaluate(() => document.activeElement.querySelector('select')?.name);
    expect(focused === 'grid_0_sunday_0', `the arrows move the focus: ${focused}`);
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('p');
    await page.keyboard.press('Shift+ArrowRight');
    await page.keyboard.press('Shift+ArrowRight');
    await page.keyboard.press('End');
    await page.keyboard.press('s');
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('o');
    expect(JSON.stringify(await row(page, 'sunday')) === JSON.stringify(expected([[2, 4, 'peak'], [23, 23, 'standard']])),
      `the keyboard painted: ${await row(page, 'sunday')}`);
    const label = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
    expect(label === 'Season 1, Sunday, 22:00: Off-peak', `the focused cell says its period: ${label}`);
    await page.screenshot({ path: `${artifacts}/20-tou-grid-painted.png`, fullPage: true });

    // 5. Saved: the stored tariff has the painted periods.
    await page.getByRole('button', { name: 'Save tariff' }).click();
    await page.waitForURL(/\/settings\/rates/);
    expect((await page.locator('#problems').count()) === 0, `saved without problems: ${await page.locator('#problems').textContent().catch(() => '')}`);
    const tariff = page.getByRole('link', { name: 'Painted TOU' });
    if (await tariff.count()) await tariff.first().click();
    await page.waitForSelector('table.tou-grid.paintable');
    expect(JSON.stringify(await row(page, 'weekday')) === JSON.stringify(expected([[7, 9, 'peak'], [10, 16, 'standard']])),
      `weekdays as saved: ${await row(page, 'weekday')}`);
    expect(JSON.stringify(await row(page, 'sunday')) === JSON.stringify(expected([[2, 4, 'peak'], [23, 23, 'standard']])),
      `Sundays as saved: ${await row(page, 'sunday')}`);
    const editUrl = page.url();

    // 6. Without JavaScript: the selects are the grid, and a changed one colours its cell.
    const plain = await browser.newContext({ javaScriptEnabled: false, storageState: await context.storageState() });
    const noJs = await plain.newPage();
    await noJs.goto(editUrl);
    expect(await noJs.locator('select[name="grid_0_weekday_7"]').isVisible(), 'the select is there without JavaScript');
    expect(await noJs.getByRole('toolbar').count() === 0 || await noJs.locator('.tou-brush').first().isHidden(), 'no brush without JavaScript');
    s = await state(noJs, 'weekday', 7);
    expect(s.value === 'peak' && s.colour === PEAK, `the saved period without JavaScript: ${JSON.stringify(s)}`);
    await noJs.selectOption('select[name="grid_0_weekday_7"]', 'standard');
    s = await state(noJs, 'weekday', 7);
    expect(s.colour === STANDARD, `the cell follows its select without JavaScript: ${JSON.stringify(s)}`);
    await noJs.screenshot({ path: `${artifacts}/21-tou-grid-no-js.png`, fullPage: true });
    await plain.close();

    expect(errors.length === 0, `no script errors: ${errors.join('; ')}`);
    console.log('tou grid flow passed');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
