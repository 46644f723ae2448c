/**
 * parseIsoDate (src/config.ts), the one reader of dates given to dcvd (--email-dcv-cutoff,
 * --password-expires, the admin API's passwordExpiresAt): UTC unless a zone is given, and a day or
 * time that does not exist is refused instead of rolled over.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatIsoDate, parseIsoDate } from '../src/config.ts';

test('dates and date-times: UTC without a zone, the zone\u2019s offset with one', () => {
  assert.equal(parseIsoDate('2028-03-15'), Date.UTC(2028, 2, 15));
  assert.equal(parseIsoDate(' 2028-03-15 '), Date.UTC(2028, 2, 15));
  assert.equal(parseIsoDate('2027-06-15T12:00:00'), Date.UTC(2027, 5, 15, 12));
  assert.equal(parseIsoDate('2027-06-15 12:00'), Date.UTC(2027, 5, 15, 12));
  assert.equal(parseIsoDate('2027-06-15T12:00:00Z'), Date.UTC(2027, 5, 15, 12));
  assert.equal(parseIsoDate('2027-06-15T12:00:00.250z'), Date.UTC(2027, 5, 15, 12, 0, 0, 250));
  assert.equal(parseIsoDate('2027-06-15T12:00:00+02:00'), Date.UTC(2027, 5, 15, 10));
  assert.equal(parseIsoDate('2027-06-15T12:00:00-0530'), Date.UTC(2027, 5, 15, 17, 30));
  assert.equal(parseIsoDate('2028-02-29'), Date.UTC(2028, 1, 29), 'a leap day');
  // What formatIsoDate writes reads back.
  for (const ms of [Date.UTC(2028, 2, 15), Date.UTC(2027, 5, 15, 12, 34, 56, 789)]) assert.equal(parseIsoDate(formatIsoDate(ms)), ms);
});

test('days and times that do not exist, and other shapes, are refused', () => {
  for (const text of [
    '2025-02-30', '2027-02-29', '2027-13-01', '2027-00-10', '2027-04-31', '2027-06-00',
    '2027-06-15T24:30:00Z', '2027-06-15T12:60:00Z', '2027-06-15T12:00:60Z', '2027-06-15T12:00:00+25:00', '2027-06-15T12:00:00+02:75',
    'tomorrow', '', '2027-6-15', '15/06/2027', '2027-06-15T12', '2027-06-15T12:00:00ZZ', '2027-06-15T12:00:00 UTC',
  ]) {
    assert.throws(() => parseIsoDate(text), /expected an ISO date/, text);
  }
});
