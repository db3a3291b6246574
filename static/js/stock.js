// The stock page: the newest price from /ticker, and a chart of the recent
// ones. The same code runs over a native EventSource or a LongPollEventSource:
// that is the point of the fallback.
import { abandonPollAfterMs, showStream } from './page.js';
import { streamAttempt } from './transport.js';

const CHART_LENGTH = 60; // prices kept for the chart
const CHART_MARGIN = 8; // px of the viewBox kept free above and below the line

const priceText = document.getElementById('price');
const chart = document.getElementById('chart');
const chartLine = document.getElementById('chart-line');
const chartHigh = document.getElementById('chart-high');
const chartLow = document.getElementById('chart-low');

const prices = [];

function showPrice(text) {
  const price = Number(text);
  const previous = prices.at(-1);
  priceText.textContent = text;
  if (previous !== undefined && price !== previous) {
    priceText.dataset.trend = price > previous ? 'up' : 'down';
  }
  prices.push(price);
  if (prices.length > CHART_LENGTH) prices.shift();
  drawChart();
}

// Newest price at the right edge; the highest at the top, the lowest at the
// bottom (a flat line runs through the middle).
function drawChart() {
  const { width, height } = chart.viewBox.baseVal;
  const high = Math.max(...prices);
  const low = Math.min(...prices);
  const step = width / (CHART_LENGTH - 1);
  const offset = CHART_LENGTH - prices.length;
  const points = prices.map((price, i) => {
    const x = (offset + i) * step;
    const y = high === low
      ? height / 2
      : CHART_MARGIN + ((high - price) / (high - low)) * (height - 2 * CHART_MARGIN);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  chartLine.setAttribute('points', points.join(' '));
  chartHigh.textContent = high.toFixed(2);
  chartLow.textContent = low.toFixed(2);
}

// tutorial: stock-connect
// The price stream, over a native EventSource or the long-poll fallback;
// page.js chooses, KeepOpen reconnects, tabs.js shares it with the other tabs.
showStream({
  stream: '/ticker',
  attempts: {
    eventsource: streamAttempt('/ticker', { transport: 'eventsource' }),
    longpoll: streamAttempt('/ticker', { transport: 'longpoll', abandonAfterMs: abandonPollAfterMs() }),
  },
  onevent: (event) => showPrice(event.data),
});
// end tutorial: stock-connect
