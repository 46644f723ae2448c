import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GET_DCV_EMAIL_ADDRESS_LIST as GET,
  RESEND_DCV_EMAIL as RESEND,
  decodeAddressList,
  decodeCollectSsl,
  decodeJson,
  decodeText,
  decodeUrlencoded,
  ENDPOINTS,
  encodeJson,
  encodeJsonError,
  encodeRequestParams,
  encodeText,
  encodeTextError,
  encodeUrlencoded,
  encodeUrlencodedFields,
  errorMessage,
  findParam,
  formEntries,
  parseInteger,
  parseRequestParams,
  requestedFormat,
  sameParamName,
  singleParamValue,
  type EndpointSpec,
} from '../src/index.ts';

const parse = (spec: EndpointSpec, body: string) => parseRequestParams(spec, formEntries(body));
const base = 'loginName=u&loginPassword=p';

test('messages are the seeds\u2019 texts, with xxxx replaced', () => {
  assert.equal(errorMessage('GetDCVEmailAddressList', -2, 'foo'), 'Unrecognised argument!');
  assert.equal(errorMessage('ResendDCVEmail', -2, 'foo'), "'foo' is an unrecognized argument!");
  assert.equal(errorMessage('ResendDCVEmail', -3, 'orderNumber'), "The 'orderNumber' argument is missing!");
  assert.equal(errorMessage('ResendDCVEmail', -90, 'ResendDCVEmail'), "Permission denied for using 'voucher' with 'ResendDCVEmail'.");
  assert.equal(errorMessage('GetDCVEmailAddressList', -160), 'The request for the DCV email address list was unsuccessful.');
  assert.equal(errorMessage('ResendDCVEmail', -160), 'The attempt to resend DCV emails did not succeed.');
  // `$&` in an item stays literal.
  assert.equal(errorMessage('ResendDCVEmail', -2, '$&x'), "'$&x' is an unrecognized argument!");
});

test('unknown names win over everything after them; -2 carries the name as sent', () => {
  assert.deepEqual(parse(GET, 'Bogus=1&loginName=u'), { ok: false, error: { code: -2, item: 'Bogus' } });
  assert.deepEqual(parse(RESEND, 'x'), { ok: false, error: { code: -2, item: 'x' } });
});

test('names match case-insensitively, values stay as sent', () => {
  const r = parse(GET, 'LOGINNAME=UsEr&loginpassword=Pw&DomainName=Example.COM&PRODUCT=801&responseformat=2');
  assert.deepEqual(r, { ok: true, params: { loginName: 'UsEr', loginPassword: 'Pw', domainName: 'Example.COM', product: 801, responseFormat: 2 } });
});

test('names match ASCII-case-insensitively only: a non-ASCII letter that lower-cases to ASCII is an unknown name', () => {
  const AUTO_APPLY = ENDPOINTS.AutoApplyOrder;
  // U+212A KELVIN SIGN: 'K'.toLowerCase() is 'k', so toLowerCase() matching took it for isCallbackCompleted.
  const kelvin = 'isCallbac\u212ACompleted';
  assert.equal(findParam(AUTO_APPLY, kelvin), undefined);
  assert.equal(findParam(AUTO_APPLY, 'ISCALLBACKCOMPLETED')?.name, 'isCallbackCompleted');
  assert.deepEqual(parse(AUTO_APPLY, `${base}&${encodeURIComponent(kelvin)}=Y`), { ok: false, error: { code: -2, item: kelvin } });
  // Others whose lower case is ASCII or longer: the Turkish dotted capital I, the long s (upper-cases to S).
  assert.deepEqual(parse(GET, `loginNam\u0130=u`), { ok: false, error: { code: -2, item: 'loginNam\u0130' } });
  assert.deepEqual(parse(GET, `login\u017Fame=u`), { ok: false, error: { code: -2, item: 'login\u017Fame' } });
  assert.equal(sameParamName('responseFormat', 'RESPONSEformat'), true);
  assert.equal(sameParamName('k', '\u212A'), false);
  assert.equal(singleParamValue(formEntries('LOGINNAME=a&x=1'), 'loginName'), 'a');
  assert.equal(singleParamValue(formEntries('loginName=a&LoginName=b'), 'loginName'), undefined);
  assert.equal(singleParamValue(formEntries(`loginNam\u0130=a`), 'loginName'), undefined);
});

test('a repeated parameter is -4 on it, even with one empty value', () => {
  assert.deepEqual(parse(GET, `${base}&loginName=`), { ok: false, error: { code: -4, item: 'loginName' } });
  assert.deepEqual(parse(RESEND, `${base}&orderNumber=1&ORDERNUMBER=1`), { ok: false, error: { code: -4, item: 'orderNumber' } });
});

test('required parameters are checked in table order, empty counts as absent', () => {
  assert.deepEqual(parse(GET, ''), { ok: false, error: { code: -3, item: 'loginName' } });
  assert.deepEqual(parse(GET, 'loginName=&loginPassword=p'), { ok: false, error: { code: -3, item: 'loginName' } });
  assert.deepEqual(parse(GET, `${base}&product=801`), { ok: false, error: { code: -3, item: 'domainName' } });
  // product is optional (CONTRACT §1, revised): without it the parameters are complete.
  assert.deepEqual(parse(GET, `${base}&domainName=a.com`), { ok: true, params: { loginName: 'u', loginPassword: 'p', domainName: 'a.com' } });
  // -3 comes before -4 of an earlier parameter (step 5 before step 6).
  assert.deepEqual(parse(GET, `loginName=${'a'.repeat(65)}&loginPassword=p`), { ok: false, error: { code: -3, item: 'domainName' } });
});

test('the conditional pair reports orderNumber; either one satisfies it', () => {
  assert.deepEqual(parse(RESEND, base), { ok: false, error: { code: -3, item: 'orderNumber' } });
  assert.deepEqual(parse(RESEND, `${base}&orderNumber=&baseOrderNumber=`), { ok: false, error: { code: -3, item: 'orderNumber' } });
  assert.equal(parse(RESEND, `${base}&baseOrderNumber=7`).ok, true);
  assert.equal(parse(RESEND, `${base}&orderNumber=7`).ok, true);
});

test('types, lengths and enums', () => {
  const bad = (body: string, item: string) =>
    assert.deepEqual(parse(GET, body), { ok: false, error: { code: -4, item } }, body);
  bad(`loginName=${'a'.repeat(65)}&loginPassword=p&domainName=a.com&product=801`, 'loginName');
  bad(`loginName=u&loginPassword=${'p'.repeat(129)}&domainName=a.com&product=801`, 'loginPassword');
  bad(`${base}&domainName=${'a'.repeat(256)}&product=801`, 'domainName');
  // Which product codes count is the server's list, given as `allowed`; without one, any API integer.
  assert.equal(parse(GET, `${base}&domainName=a.com&product=800`).ok, true);
  const products = { allowed: { product: [801, 803] } };
  assert.deepEqual(parseRequestParams(GET, formEntries(`${base}&domainName=a.com&product=800`), products), { ok: false, error: { code: -4, item: 'product' } });
  assert.equal(parseRequestParams(GET, formEntries(`${base}&domainName=a.com&product=803`), products).ok, true);
  bad(`${base}&domainName=a.com&product=0`, 'product');
  bad(`${base}&domainName=a.com&product=801&responseFormat=3`, 'responseFormat');
  bad(`${base}&domainName=a.com&product=%2B801`, 'product');
  bad(`${base}&domainName=a.com&product=801.0`, 'product');
  // Limits count characters, not bytes.
  assert.equal(parse(GET, `loginName=${'\u00e9'.repeat(64)}&loginPassword=p&domainName=a.com&product=801`).ok, true);
  assert.equal(parse(GET, `loginName=${'\u{1F600}'.repeat(64)}&loginPassword=p&domainName=a.com&product=801`).ok, true);
  const resendBad = (body: string, item: string) =>
    assert.deepEqual(parse(RESEND, body), { ok: false, error: { code: -4, item } }, body);
  resendBad(`${base}&orderNumber=0`, 'orderNumber');
  resendBad(`${base}&orderNumber=-1`, 'orderNumber');
  resendBad(`${base}&orderNumber=9007199254740992`, 'orderNumber');
  resendBad(`${base}&orderNumber=1&dcvTemplateID=x`, 'dcvTemplateID');
  resendBad(`${base}&orderNumber=1&dcvEmailAddress=${'a'.repeat(256)}`, 'dcvEmailAddress');
});

test('integers: plain digits within 1..2^53-1', () => {
  assert.equal(parseInteger('1'), 1);
  assert.equal(parseInteger('9007199254740991'), 9007199254740991);
  // Leading zeros are accepted; the digits after them count (issue 14 item 12).
  assert.equal(parseInteger('0801'), 801);
  assert.equal(parseInteger(`${'0'.repeat(40)}9007199254740991`), 9007199254740991);
  for (const v of ['000', `${'0'.repeat(40)}9007199254740992`, `0${'1'.repeat(17)}`]) assert.equal(parseInteger(v), undefined, v);
  for (const v of ['0', '', ' 1', '1 ', '+1', '-1', '1e3', '0x10', '9007199254740992', '1'.repeat(400)]) {
    assert.equal(parseInteger(v), undefined, v);
  }
});

test('requestedFormat: JSON only for one responseFormat=2', () => {
  assert.equal(requestedFormat(formEntries('responseformat=2')), 2);
  assert.equal(requestedFormat(formEntries('responseFormat=1')), 1);
  assert.equal(requestedFormat(formEntries('responseFormat=2&responseFormat=2')), 1);
  assert.equal(requestedFormat(formEntries('responseFormat=3')), 1);
  assert.equal(requestedFormat(formEntries('')), 1);
});

test('urlencoded encoding matches the seed and round-trips', () => {
  assert.equal(encodeUrlencoded('ResendDCVEmail'), 'errorCode=0');
  assert.equal(
    encodeUrlencoded('ResendDCVEmail', { code: -16 }),
    'errorCode=-16&errorMessage=Incorrect+login+details%2C+account+is+locked%2C+password+has+expired+or+your+source+IP+is+blocked.',
  );
  const body = encodeUrlencoded('ResendDCVEmail', { code: -4, item: 'orderNumber' });
  assert.equal(body, 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber');
  assert.deepEqual(decodeUrlencoded(body), {
    ok: false,
    error: { errorCode: -4, errorMessage: "The value of the 'orderNumber' argument is invalid!", errorItem: 'orderNumber', extra: {} },
  });
  // -90 names the endpoint in the message but carries no errorItem.
  assert.doesNotMatch(encodeUrlencoded('ResendDCVEmail', { code: -90, item: 'ResendDCVEmail' }), /errorItem/);
  assert.deepEqual(decodeUrlencoded('errorCode=0'), { ok: true, value: { errorCode: '0' } });
});

test('text format: exact bytes and round trip', () => {
  const list = { domainName: 'www.example.com', levels: { 3: ['admin@www.example.com'], 2: ['admin@example.com', 'webmaster@example.com'] } };
  const body = encodeText(list);
  assert.equal(
    body,
    '0\ndomain_name\twww.example.com\nlevel2_email\tadmin@example.com\nlevel2_email\twebmaster@example.com\nlevel3_email\tadmin@www.example.com\n',
  );
  const decoded = decodeText(body);
  assert.ok(decoded.ok);
  assert.deepEqual(decoded.value.levels, list.levels);
  assert.equal(decoded.value.domainName, 'www.example.com');
  assert.deepEqual(decoded.value.emails, ['admin@example.com', 'webmaster@example.com', 'admin@www.example.com']);
  assert.equal(encodeTextError('GetDCVEmailAddressList', { code: -3, item: 'domainName' }), "-3\nThe 'domainName' argument is missing!\n");
  // A name as the request spelled it cannot add lines or fields: its control characters are written as %XX.
  const hostile = encodeTextError('AutoApplyOrder', { code: -2, item: 'foo\n0\ndomain_name\tevil\r\u0000\u007f\u0085\u2028\u2029é' });
  assert.equal(hostile, "-2\n'foo%0A0%0Adomain_name%09evil%0D%00%7F%C2%85%E2%80%A8%E2%80%A9é' is an unrecognized argument!\n");
  assert.equal(hostile.split('\n').length, 3);
  // The text format carries no errorItem: it is read back from the seed's message where it names one.
  assert.deepEqual(decodeText("-3\nThe 'domainName' argument is missing!\n"), {
    ok: false,
    error: { errorCode: -3, errorMessage: "The 'domainName' argument is missing!", errorItem: 'domainName', extra: {} },
  });
  for (const [code, item] of [[-3, 'product'], [-4, 'responseFormat'], [-4, "it's"]] as const) {
    const d = decodeText(encodeTextError('GetDCVEmailAddressList', { code, item }));
    assert.ok(!d.ok);
    assert.equal(d.error.errorItem, item);
  }
  for (const body of ['-2\nUnrecognised argument!\n', "-4\nThe value of the '' argument is invalid!\n", '-4\nsomething else\n', "-16\nThe 'x' argument is missing!\n"]) {
    const d = decodeText(body);
    assert.ok(!d.ok);
    assert.equal(d.error.errorItem, undefined, body);
  }
});

test('text decoding tolerates what the real host sends', () => {
  const r = decodeText('0\r\nlevel2_email\t admin@example.com\r\nwhois_email\tnone\r\nwhois_email\tw@example.com\r\nlevel12_email\tx@a.b\r\nfoo\tbar\r\n');
  assert.ok(r.ok);
  assert.deepEqual(r.value.levels, { 2: ['admin@example.com'], 12: ['x@a.b'] });
  assert.deepEqual(r.value.whoisEmails, ['w@example.com']);
  assert.deepEqual(r.value.extra, { foo: ['bar'] });
});

test('JSON format: exact bytes and round trip', () => {
  const list = { domainName: 'example.com', levels: { 2: ['admin@example.com', 'contact@example.org'] } };
  const body = encodeJson(list);
  assert.equal(body, '{"errorCode":0,"domain_name":"example.com","level2_email":["admin@example.com","contact@example.org"]}');
  const d = decodeJson(body);
  assert.ok(d.ok);
  assert.deepEqual(d.value.levels, list.levels);
  assert.equal(encodeJsonError('GetDCVEmailAddressList', { code: -2, item: 'Foo' }), '{"errorCode":-2,"errorMessage":"Unrecognised argument!","errorItem":"Foo"}');
  assert.equal(
    encodeJsonError('GetDCVEmailAddressList', { code: -16 }),
    '{"errorCode":-16,"errorMessage":"Incorrect login details, account is locked, password has expired or your source IP is blocked."}',
  );
});

test('decoders reject bodies that are not the protocol', () => {
  assert.throws(() => decodeText('<html>'), /numeric error code/);
  assert.throws(() => decodeJson('nope'), /not valid JSON/);
  assert.throws(() => decodeJson('[1]'), /not an object/);
  assert.throws(() => decodeUrlencoded('foo=bar'), /numeric error code/);
});

test('request bodies: canonical names in table order, absent values left out, read back by the parser', () => {
  const body = encodeRequestParams(GET, { responseFormat: 2, domainName: 'www.example.com', loginPassword: 'p&=+ é', loginName: 'u' });
  assert.equal(body, 'loginName=u&loginPassword=p%26%3D%2B+%C3%A9&domainName=www.example.com&responseFormat=2');
  assert.deepEqual(parse(GET, body), { ok: true, params: { loginName: 'u', loginPassword: 'p&=+ é', domainName: 'www.example.com', responseFormat: 2 } });
  const full = encodeRequestParams(GET, { loginName: 'u', loginPassword: 'p&=+ é', domainName: 'a.com', product: 803, responseFormat: 1 });
  assert.deepEqual(parse(GET, full), { ok: true, params: { loginName: 'u', loginPassword: 'p&=+ é', domainName: 'a.com', product: 803, responseFormat: 1 } });
  const resend = encodeRequestParams(RESEND, { loginName: 'u', loginPassword: 'p', dcvTemplateID: 4, baseOrderNumber: 9, orderNumber: undefined, dcvEmailAddress: 'admin@a.com' });
  assert.equal(resend, 'loginName=u&loginPassword=p&baseOrderNumber=9&dcvEmailAddress=admin%40a.com&dcvTemplateID=4');
  assert.deepEqual(parse(RESEND, resend), { ok: true, params: { loginName: 'u', loginPassword: 'p', baseOrderNumber: 9, dcvEmailAddress: 'admin@a.com', dcvTemplateID: 4 } });
  // Only the spec's canonical names: a misspelt name is the caller's bug, not something to send.
  assert.throws(() => encodeRequestParams(RESEND, { dcvTemplateId: 4 }), /has no parameter "dcvTemplateId"/);
});

test('errorDetail is its own field in urlencoded and JSON errors', () => {
  assert.deepEqual(decodeUrlencoded('errorCode=-4&errorMessage=bad&errorItem=orderNumber&errorDetail=no+such+order&x=1'), {
    ok: false,
    error: { errorCode: -4, errorMessage: 'bad', errorItem: 'orderNumber', errorDetail: 'no such order', extra: { x: '1' } },
  });
  assert.deepEqual(decodeJson('{"errorCode":-14,"errorMessage":"m","errorDetail":"d","errorItem":null}'), {
    ok: false,
    error: { errorCode: -14, errorMessage: 'm', errorDetail: 'd', extra: {} },
  });
});

test('decodeAddressList picks the decoder from the body, whatever was asked', () => {
  const list = { domainName: 'example.com', levels: { 2: ['admin@example.com'] } };
  for (const body of [encodeText(list), encodeJson(list), ` \n${encodeJson(list)}`]) {
    const d = decodeAddressList(body);
    assert.ok(d.ok, body);
    assert.deepEqual(d.value.levels, list.levels);
    assert.equal(d.value.domainName, 'example.com');
  }
  // dcvd answers errors found before the parameters in text, even to responseFormat=2.
  assert.deepEqual(decodeAddressList(encodeTextError('GetDCVEmailAddressList', { code: -17 })), {
    ok: false,
    error: { errorCode: -17, errorMessage: 'Request used GET rather than POST!', extra: {} },
  });
  const u = decodeAddressList('errorCode=-2&errorMessage=Unrecognised+argument%21&errorItem=foo');
  assert.ok(!u.ok);
  assert.equal(u.error.errorItem, 'foo');
  const s = decodeAddressList('errorCode=0&domain_name=a.com&level2_email=admin%40a.com&level2_email=webmaster%40a.com');
  assert.ok(s.ok);
  assert.deepEqual(s.value.levels, { 2: ['admin@a.com', 'webmaster@a.com'] });
  assert.throws(() => decodeAddressList('<html>502</html>'), /numeric error code/);
});

test('decodeCollectSsl reads what dcvd encodes, in both forms, and rejects what is not the protocol', () => {
  const fields = [['orderNumber', 1234567], ['certificateID', 7654321], ['dcvStatus', 0], ['fqdn', 'xn--bcher-kva.example']] as const;
  assert.deepEqual(decodeCollectSsl(encodeUrlencodedFields(fields)), {
    ok: true,
    value: { statusCode: 0, orderNumber: 1234567, certificateID: 7654321, dcvStatus: 0, fqdn: 'xn--bcher-kva.example', extra: {}, lines: [] },
  });
  assert.deepEqual(decodeCollectSsl('0\n'), { ok: true, value: { statusCode: 0, extra: {}, lines: [] } });
  // A number past 2^53 - 1 would lose digits: kept as sent. A `-0` is the code 0, not an error or a negative zero.
  assert.deepEqual(decodeCollectSsl('errorCode=-0&certificateID=9007199254740993'), { ok: true, value: { statusCode: 0, extra: { certificateID: '9007199254740993' }, lines: [] } });
  assert.deepEqual(decodeCollectSsl('-0\n'), { ok: true, value: { statusCode: 0, extra: {}, lines: [] } });
  for (const encode of [encodeUrlencoded, encodeTextError] as const) {
    assert.deepEqual(decodeCollectSsl(encode('CollectSSL', { code: -20 })), { ok: false, error: { errorCode: -20, errorMessage: 'The order was rejected or cancelled.', extra: {} } });
    const missing = decodeCollectSsl(encode('CollectSSL', { code: -3, item: 'queryType' }));
    assert.ok(!missing.ok);
    assert.equal(missing.error.errorItem, 'queryType');
    assert.equal(missing.error.errorMessage, "The 'queryType' argument is missing!");
  }
  assert.throws(() => decodeCollectSsl('<html>502</html>'), /numeric error code/);
  assert.throws(() => decodeCollectSsl(''), /numeric error code/);
  assert.throws(() => decodeCollectSsl('errorCode=&orderNumber=1'), /numeric error code/);
});
