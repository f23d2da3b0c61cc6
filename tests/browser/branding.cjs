// Real-browser flow for branding and sign-in, driven by playwright-core in Debian's Chromium.
// Run by tests/api/browser.rs, which starts the portal and passes:
//   node branding.cjs <base url> <admin email> <admin password> <artifacts dir> <logo.png>
// Exits non-zero with a message on the first failed expectation; screenshots go to <artifacts>.
const { chromium } = require('playwright-core');

const [, , base, email, password, artifacts, logoPath] = process.argv;

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

const cssVar = (page, name) =>
  page.evaluate((n) => getComputedStyle(document.documentElement).getPropertyValue(n).trim(), name);

const logoShown = (page) =>
  page.evaluate(() => {
    const img = document.querySelector('header .brand img');
    return !!img && img.complete && img.naturalWidth > 0;
  });

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.TAU_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.setDefaultTimeout(15000);

    // 1. Keyboard-only sign-in: the email field has focus on load; Tab, type, Enter.
    await page.goto(`${base}/login`);
    await page.screenshot({ path: `${artifacts}/01-login-default.png`, fullPage: true });
    expect((await page.evaluate(() => document.activeElement.id)) === 'email', 'the email field has focus on load');
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    expect((await page.evaluate(() => document.activeElement.id)) === 'password', 'Tab moves to the password');
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base}/`);
    expect(await page.getByRole('heading', { name: 'Overview' }).isVisible(), 'the overview after sign-in');
    await page.screenshot({ path: `${artifacts}/02-overview.png`, fullPage: true });

    // 2. Settings -> Branding: a refused colour, then valid colours and a logo.
    await page.goto(`${base}/settings/branding`);
    await page.fill('#primary_color', '#fde047');
    await page.getByRole('button', { name: 'Save branding' }).click();
    expect(await page.locator('#primary_color-error').isVisible(), 'low contrast is refused');
    expect((await page.locator('#primary_color-error').textContent()).includes('WCAG AA'), 'the message names WCAG AA');
    await page.screenshot({ path: `${artifacts}/03-branding-error.png`, fullPage: true });

    await page.fill('#application_name', 'Acme Corp Power Monitoring');
    await page.fill('#primary_color', '#7c2d12');
    await page.fill('#secondary_color', '#1d4ed8');
    await page.fill('#accent_color', '#f59e0b');
    await page.fill('#footer_text', '© Acme Corp');
    await page.getByRole('button', { name: 'Save branding' }).click();
    await page.getByText('The branding was saved.').waitFor();
    await page.setInputFiles('#logo', logoPath);
    await page.getByRole('button', { name: 'Upload logo' }).click();
    await page.getByText('The logo was uploaded.').waitFor();

    await page.reload();
    expect((await cssVar(page, '--primary')) === '#7c2d12', 'the primary colour applies after a reload');
    expect(await logoShown(page), 'the logo shows in the header');
    expect((await page.locator('footer').textContent()).includes('© Acme Corp'), 'the footer text');
    await page.screenshot({ path: `${artifacts}/04-branding-saved.png`, fullPage: true });

    // 3. Signed out, the sign-in page carries the brand too.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/login/);
    expect(await page.getByText('You have signed out.').isVisible(), 'the sign-out notice');
    expect((await cssVar(page, '--primary')) === '#7c2d12', 'the sign-in page uses the brand colour');
    expect(await logoShown(page), 'the sign-in page shows the logo');
    expect((await page.title()).includes('Acme Corp Power Monitoring'), 'the title carries the name');
    await page.screenshot({ path: `${artifacts}/05-login-branded.png`, fullPage: true });

    // 4. A phone-sized view of the same page.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${artifacts}/06-login-phone.png`, fullPage: true });
    console.log('browser flow passed');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
