"""Labeled corpus for the accuracy benchmark: synthetic request bodies with exactly known PI and negatives.

    python bench/corpus.py --bodies 20 --seed 7            # summary only: nothing written
    python bench/corpus.py --bodies 200 --dump             # bench/out/corpus-seed7-200.jsonl (git-ignored)

Each `Body` is the bytes an app would POST (JSON objects, arrays of records and nested documents;
form-urlencoded in UTF-8 and GBK; CSV with a header row; free Chinese text) together with
- `labels`: every PI value planted, as (field_type, value, key, where) — `where` is "keyed" (under a key that
  names the type, in one of the styles real Chinese systems use: English, camelCase, pinyin initials,
  Chinese), "generic" (value1, remark…: only the value's shape tells) or "text" (inside a sentence);
- `negatives`: every non-PI value planted, by kind — the hard ones (order and tracking numbers, some passing
  Luhn; timestamps; 400/800 and 12-digit codes; IDs, cards and credit codes with a wrong check digit;
  Latin-script text; base64; prices; SKUs; hex ids; UUIDs under non-device keys; mobile-shaped numbers under
  business keys; product and company names under name keys) and plain filler.

Values come from a seeded Faker('zh_CN') and random.Random, so one seed gives one corpus. Check digits come
from python-stdnum (cn.ric, cn.uscc, luhn), except the VIN's ISO 3779 digit, which stdnum lacks. The corpus
holds raw (synthetic) PI, so it lives in memory; `--dump` writes it only under bench/out/, which git ignores.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import io
import json
import logging
import random
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from faker import Faker
from stdnum import luhn
from stdnum.cn import ric, uscc

log = logging.getLogger("bench.corpus")

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"

# Field types the generator plants. The first six are the core the targets are about; the rest are
# planted because a correct generator is short, and are scored only where the engine has a recognizer.
CORE_TYPES = ("resident_id_cn", "mobile_cn", "email", "bank_card", "person_name", "postal_address")
EXTRA_TYPES = ("landline_cn", "date_of_birth", "org_credit_code", "passport_no", "travel_permit",
               "vehicle_plate", "vin", "device_id")
PLANTED_TYPES = CORE_TYPES + EXTRA_TYPES

# Keys per type and naming style. Written from what Chinese systems use, not copied from the catalog: the
# benchmark should find the key hints the catalog lacks (e.g. vinCode, 客户姓名).
KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "person_name": {
        "en": ("name", "realName", "receiverName", "contactName", "custName", "consignee", "holderName",
               "passengerName", "buyer_name", "customerName"),
        "py": ("xm", "khxm", "shrxm", "lxr", "sjrxm"),
        "zh": ("姓名", "收件人", "联系人", "客户姓名", "收货人")},
    "resident_id_cn": {
        "en": ("idNo", "idCard", "idCardNo", "certNo", "identityNo", "id_card_no", "receiverIdCard"),
        "py": ("sfzh", "sfzhm", "zjhm"),
        "zh": ("身份证号", "证件号码", "身份证号码")},
    "mobile_cn": {
        "en": ("mobile", "phone", "mobileNo", "phoneNumber", "receiverMobile", "contactPhone", "tel",
               "buyer_mobile"),
        "py": ("sjh", "sjhm", "lxdh", "shrdh"),
        "zh": ("手机号", "联系电话", "手机")},
    "email": {
        "en": ("email", "mail", "emailAddress", "contactEmail"),
        "py": ("yx", "dzyx"),
        "zh": ("邮箱", "电子邮箱")},
    "bank_card": {
        "en": ("bankCardNo", "cardNo", "card_no", "bankCard", "debitCardNo"),
        "py": ("yhkh", "yhkkh"),
        "zh": ("银行卡号", "卡号")},
    "postal_address": {
        "en": ("address", "addr", "receiverAddress", "detailAddress", "homeAddress", "deliveryAddress"),
        "py": ("jtdz", "jtzz", "shdz", "txdz"),
        "zh": ("收货地址", "家庭住址", "地址", "详细地址")},
    "landline_cn": {
        "en": ("telephone", "landline", "homePhone", "officePhone"),
        "py": ("gddh", "zjdh"),
        "zh": ("座机", "固定电话")},
    "date_of_birth": {
        "en": ("birthday", "birthDate", "dob"),
        "py": ("csrq",),
        "zh": ("出生日期",)},
    "org_credit_code": {
        "en": ("creditCode", "uscc", "socialCreditCode"),
        "py": ("tyshxydm", "shxydm"),
        "zh": ("统一社会信用代码",)},
    "passport_no": {
        "en": ("passportNo", "passport"),
        "py": ("hzhm", "hzh"),
        "zh": ("护照号码",)},
    "travel_permit": {
        "en": ("permitNo", "residencePermitNo", "hkMacaoPermit"),
        "py": ("txzh", "hxzh"),
        "zh": ("通行证号", "居住证号")},
    "vehicle_plate": {
        "en": ("plateNo", "licensePlate", "carNo"),
        "py": ("cph", "hphm"),
        "zh": ("车牌号",)},
    "vin": {
        "en": ("vin", "vinCode"),
        "py": ("clsbdh", "cjh"),
        "zh": ("车架号",)},
    "device_id": {
        "en": ("imei", "deviceImei"),
        "py": ("sbh",),
        "zh": ("IMEI号",)},
}
# Keys that say nothing about their value. None of them is a catalog hint (two-letter hints like hm, kh, zz
# would turn a "generic" key into a keyed one).
GENERIC_KEYS = ("value1", "value2", "field3", "col_4", "extra", "memo", "info", "content", "attr1", "v")
# Types whose shape alone identifies them, so they are planted under generic keys too. Names have no shape.
SHAPED_TYPES = ("resident_id_cn", "mobile_cn", "email", "bank_card", "org_credit_code", "postal_address")
TEXT_KEYS = ("remark", "memo", "note", "备注", "comment", "content")

# Type weights of a record: how often each type appears in one (core types dominate real exports).
TYPE_WEIGHTS = {"person_name": 0.85, "mobile_cn": 0.85, "resident_id_cn": 0.55, "postal_address": 0.6,
                "email": 0.35, "bank_card": 0.3, "landline_cn": 0.1, "date_of_birth": 0.15,
                "org_credit_code": 0.08, "passport_no": 0.06, "travel_permit": 0.04, "vehicle_plate": 0.06,
                "vin": 0.05, "device_id": 0.06}

# Real province / city / district triples (municipalities have no city level).
REGIONS = (("浙江省", "杭州市", "西湖区"), ("浙江省", "宁波市", "鄞州区"), ("浙江省", "温州市", "鹿城区"),
           ("广东省", "深圳市", "南山区"), ("广东省", "广州市", "天河区"), ("江苏省", "南京市", "鼓楼区"),
           ("江苏省", "苏州市", "姑苏区"), ("四川省", "成都市", "武侯区"), ("湖北省", "武汉市", "洪山区"),
           ("山东省", "青岛市", "市南区"), ("福建省", "厦门市", "思明区"), ("河南省", "郑州市", "金水区"),
           ("陕西省", "西安市", "雁塔区"), ("北京市", "", "朝阳区"), ("上海市", "", "浦东新区"),
           ("天津市", "", "南开区"), ("重庆市", "", "渝中区"), ("云南省", "昆明市", "五华区"),
           ("黑龙江省", "哈尔滨市", "南岗区"), ("新疆维吾尔自治区", "乌鲁木齐市", "天山区"),
           ("广西壮族自治区", "南宁市", "青秀区"), ("安徽省", "合肥市", "蜀山区"))
ESTATES = ("花园", "小区", "家园", "公寓", "新村", "苑")
UNIONPAY_BINS = ("622202", "622208", "621226", "622848", "621700", "622700", "622588", "621483", "622262",
                 "622188", "623668", "621661")
LANDLINE_AREAS = ("010", "021", "022", "023", "020", "025", "027", "028", "0571", "0574", "0755", "0512",
                  "0532", "0592")
PERMIT_AREAS = ("810000", "820000", "830000")
PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"        # GA 36-2018: no I or O
VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"    # ISO 3779: no I, O or Q
VIN_WMI = ("LSV", "LFV", "LGB", "LVS", "LHG", "LBV", "LDC", "LSG", "LFM", "LNB")
MINORITY_PARTS = ("阿依古丽", "买买提", "古丽娜扎", "热合曼", "艾力", "努尔", "吐尔逊", "阿不都", "迪丽拜尔",
                  "帕提古丽")
PRODUCTS = ("无线蓝牙耳机", "纯棉短袖T恤", "不锈钢保温杯", "有机大米5kg", "儿童益智积木", "机械键盘",
            "护眼台灯", "运动跑鞋", "手机壳", "空气净化器滤芯")

# Body formats and their shares of the corpus.
FORMATS = {"json_object": 0.2, "json_records": 0.2, "json_nested": 0.15, "form_utf8": 0.12,
           "form_gbk": 0.08, "csv": 0.1, "text": 0.15}


@dataclass(frozen=True, slots=True)
class Label:
    """One planted PI value. `value` is exactly the text in the body (after the format's own decoding)."""

    field_type: str
    value: str
    key: str | None       # the key it sits under; the containing key for "text" values, None in a text body
    where: str            # keyed | generic | text


@dataclass(frozen=True, slots=True)
class Negative:
    """One planted non-PI value, by kind (order_no, ts_unix_ms, ric_bad_check, …, filler)."""

    kind: str
    value: str
    key: str | None


@dataclass(slots=True)
class Body:
    index: int
    fmt: str
    content_type: str
    data: bytes
    labels: list[Label] = field(default_factory=list)
    negatives: list[Negative] = field(default_factory=list)


# One field of a record: (key, value as it goes into JSON, its Label or Negative; None for a remark sentence,
# whose labels are collected separately).
Field = tuple[str, object, Label | Negative | None]


def vin_check_digit(vin17: str) -> str:
    """ISO 3779 / GB 16735 check character (position 9) of a 17-character VIN; position 9 is ignored."""
    groups = ("", "AJ", "BKS", "CLT", "DMU", "ENV", "FW", "GPX", "HY", "RZ")
    translit = {c: v for v, chars in enumerate(groups) for c in chars}
    weights = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
    total = sum((int(c) if c.isdigit() else translit[c]) * w for c, w in zip(vin17, weights, strict=True))
    return "X" if total % 11 == 10 else str(total % 11)


def gb11714_check(code8: str) -> str:
    """Check character of a 9-character organization code (GB 11714), the USCC's positions 9-17."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c, 36) * w for c, w in zip(code8, weights, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


class CorpusGenerator:
    """Builds bodies one at a time; all randomness flows from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)
        self.latin = Faker("en_US")
        self.latin.seed_instance(seed + 1)
        self.pi: dict[str, Callable[[], str]] = {
            "resident_id_cn": self.resident_id, "mobile_cn": self.mobile, "email": self.email,
            "bank_card": self.bank_card, "person_name": self.person_name, "postal_address": self.address,
            "landline_cn": self.landline, "date_of_birth": self.date_of_birth,
            "org_credit_code": self.credit_code, "passport_no": self.passport,
            "travel_permit": self.travel_permit, "vehicle_plate": self.plate,
            "vin": self.vin, "device_id": self.imei,
        }

    # -- PI values -------------------------------------------------------------------------------------

    def resident_id(self) -> str:
        # Faker's area code, but a birth date from a fixed range: Faker's own ssn() dates depend on today,
        # which would change the corpus from one day to the next. Some births after 2012: minors under 14.
        area = self.fake.ssn()[:6]
        while area in PERMIT_AREAS:
            # Faker draws 810000/820000/830000 too: residence permits of Hong Kong, Macao and Taiwan
            # residents, a travel_permit in the catalog, not a resident ID.
            area = self.fake.ssn()[:6]
        born = self.fake.date_between(dt.date(1940, 1, 1), dt.date(2018, 12, 31)).strftime("%Y%m%d")
        first17 = area + born + self._digits(3)
        # calc_check_digit takes all 18 characters and ignores the last (engineering notes).
        value = first17 + ric.calc_check_digit(first17 + "0")
        # Some systems keep a lowercase x: the normalizer must fold it.
        return value[:-1] + "x" if value.endswith("X") and self.rng.random() < 0.3 else value

    def mobile(self) -> str:
        number = self.fake.phone_number()
        r = self.rng.random()
        if r < 0.08:
            return self.rng.choice(("+86", "+86 ", "0086", "86-")) + number
        if r < 0.16:
            return f"{number[:3]}-{number[3:7]}-{number[7:]}"
        if r < 0.2:
            return f"{number[:3]} {number[3:7]} {number[7:]}"
        return number

    def email(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            value = self.fake.email()
        elif r < 0.6:
            value = f"{self.rng.randrange(10**5, 10**10)}@qq.com"
        else:
            domain = self.rng.choice(("163.com", "126.com", "sina.com", "foxmail.com", "aliyun.com",
                                      "gmail.com"))
            value = f"{self.fake.user_name()}{self.rng.randrange(100)}@{domain}"
        return value.upper() if self.rng.random() < 0.04 else value

    def bank_card(self) -> str:
        if self.rng.random() < 0.6:
            # UnionPay debit cards: real BINs, 16 or 19 digits (Faker's cards are all 16).
            length = self.rng.choice((16, 19, 19))
            body = self.rng.choice(UNIONPAY_BINS) + "".join(self.rng.choice("0123456789")
                                                            for _ in range(length - 7))
            number = body + luhn.calc_check_digit(body)
        else:
            # Faker zh_CN: UnionPay, Visa and Mastercard, all 16 digits and Luhn-valid.
            number = self.fake.credit_card_number(self.rng.choice(("unionpay", "visa", "mastercard")))
        if self.rng.random() < 0.15:
            return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
        return number

    def person_name(self, han_only: bool = False) -> str:
        r = self.rng.random()
        if han_only or r < 0.88:
            return self.fake.name()
        if r < 0.94:
            return "·".join(self.rng.sample(MINORITY_PARTS, 2))
        return self.fake.romanized_name()

    def address(self, composed_only: bool = False) -> str:
        if not composed_only and self.rng.random() < 0.35:
            # Faker's own addresses (fictitious cities, "座" buildings), postcode dropped.
            return self.fake.address().rsplit(" ", 1)[0]
        province, city, district = self.rng.choice(REGIONS)
        street = self.fake.street_name()
        value = f"{province}{city}{district}{street}{self.rng.randrange(1, 999)}号"
        r = self.rng.random()
        if r < 0.5:
            estate = self.fake.last_name() + self.rng.choice(ESTATES)
            value += f"{estate}{self.rng.randrange(1, 30)}栋{self.rng.randrange(1, 6)}单元" \
                     f"{self.rng.randrange(1, 33)}{self.rng.randrange(1, 5):02d}室"
        elif r < 0.75:
            value += f"{self.rng.randrange(1, 20)}幢{self.rng.randrange(101, 2505)}室"
        return value

    def landline(self) -> str:
        area = self.rng.choice(LANDLINE_AREAS)
        digits = 8 if len(area) == 3 else self.rng.choice((7, 8))
        local = str(self.rng.randrange(2, 9)) + self._digits(digits - 1)
        return self.rng.choice((f"{area}-{local}", f"{area}{local}", f"({area}){local}"))

    def date_of_birth(self) -> str:
        day = self.fake.date_between(dt.date(1950, 1, 1), dt.date(2012, 12, 31))
        fmt = self.rng.choice(("%Y-%m-%d", "%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "{y}年{m}月{d}日"))
        if "{" in fmt:
            return fmt.format(y=day.year, m=day.month, d=day.day)
        return day.strftime(fmt)

    def credit_code(self) -> str:
        area = self.fake.ssn()[:6]
        if self.rng.random() < 0.3:
            org8 = "MA" + "".join(self.rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(6))
        else:
            org8 = "".join(self.rng.choice("0123456789") for _ in range(8))
        first17 = self.rng.choice(("91", "91", "92", "12", "52")) + area + org8 + gb11714_check(org8)
        return first17 + uscc.calc_check_digit(first17)

    def passport(self) -> str:
        digits = "".join(self.rng.choice("0123456789") for _ in range(8))
        r = self.rng.random()
        if r < 0.6:
            return "E" + digits
        if r < 0.85:
            return "E" + self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + digits[:7]
        return "G" + digits

    def travel_permit(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            born = self.fake.date_between(dt.date(1946, 1, 1), dt.date(2008, 1, 1)).strftime("%Y%m%d")
            first17 = self.rng.choice(PERMIT_AREAS) + born + self._digits(3)
            # calc_check_digit takes all 18 characters and ignores the last (engineering notes).
            return first17 + ric.calc_check_digit(first17 + "0")
        if r < 0.75:   # mainland travel permit for HK and Macao (往来港澳通行证)
            return "C" + self._digits(8) if self.rng.random() < 0.5 else \
                "C" + self.rng.choice(PLATE_LETTERS) + self._digits(7)
        return self.rng.choice("HM") + self._digits(8)   # home return permit (回乡证)

    def plate(self) -> str:
        head = self.rng.choice(PLATE_PROVINCES) + self.rng.choice(PLATE_LETTERS)
        if self.rng.random() < 0.15:   # new-energy: D/F + 5 digits
            return head + self.rng.choice("DF") + "".join(self.rng.choice("0123456789") for _ in range(5))
        tail = [self.rng.choice("0123456789") for _ in range(5)]
        for i in self.rng.sample(range(5), self.rng.choice((0, 0, 1, 2))):
            tail[i] = self.rng.choice(PLATE_LETTERS)
        return head + "".join(tail)

    def vin(self) -> str:
        chars = self.rng.choice(VIN_WMI) + "".join(self.rng.choice(VIN_CHARS) for _ in range(5)) + "0"
        chars += self.rng.choice("HJKLMNPRS") + self.rng.choice(VIN_CHARS)
        chars += "".join(self.rng.choice("0123456789") for _ in range(6))
        return chars[:8] + vin_check_digit(chars) + chars[9:]

    def imei(self) -> str:
        body = self.rng.choice(("35", "86", "99")) + "".join(self.rng.choice("0123456789") for _ in range(12))
        return body + luhn.calc_check_digit(body)

    # -- hard negatives --------------------------------------------------------------------------------

    def _digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def _stamp(self) -> dt.datetime:
        offset = dt.timedelta(seconds=self.rng.randrange(-86400 * 60, 86400))
        return dt.datetime(2026, 3, 2, 9, 30, 15) + offset

    def negative(self, kind: str) -> str:
        """A non-PI value of `kind`, shaped to fool a detector that looks at digits alone."""
        r = self.rng
        if kind in ("order_no", "order_no_luhn"):
            head = self._stamp().strftime("%Y%m%d%H%M%S")
            n = r.choice((18, 19, 20))
            body = head + self._digits(n - len(head) - 1)
            last = luhn.calc_check_digit(body) if kind == "order_no_luhn" else self._digits(1)
            return body + last
        if kind == "tracking_no":
            return r.choice((f"SF{self._digits(13)}", f"YT{self._digits(13)}", f"JDVA{self._digits(11)}",
                             f"7{self._digits(13)}", f"4{self._digits(11)}"))
        if kind == "ts_unix_ms":
            return str(int(self._stamp().timestamp() * 1000) + r.randrange(1000))
        if kind == "ts_compact":
            return self._stamp().strftime("%Y%m%d%H%M%S")
        if kind == "hotline":
            head = r.choice(("400", "800"))
            rest = self._digits(7)
            return r.choice((f"{head}-{rest[:3]}-{rest[3:]}", f"{head}{rest}",
                             f"{head} {rest[:3]} {rest[3:]}"))
        if kind == "code_12":
            return r.choice(("1", "0", "2")) + self._digits(11)
        if kind == "mobile_shaped":
            return "1" + r.choice("3456789") + self._digits(9)
        if kind == "ric_bad_check":
            value = self.resident_id().upper()
            return value[:17] + r.choice([c for c in "0123456789X" if c != value[17]])
        if kind == "card_bad_luhn":
            body = r.choice(UNIONPAY_BINS) + self._digits(r.choice((9, 12)))
            good = luhn.calc_check_digit(body)
            return body + r.choice([c for c in "0123456789" if c != good])
        if kind == "uscc_bad_check":
            value = self.credit_code()
            return value[:17] + r.choice([c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if c != value[17]])
        if kind == "latin_text":
            return self.latin.sentence(nb_words=r.randrange(4, 12))
        if kind == "base64":
            return base64.b64encode(r.randbytes(r.randrange(24, 180))).decode()
        if kind == "price":
            return r.choice((f"{r.randrange(1, 99999)}.{r.randrange(100):02d}", f"¥{r.randrange(1, 9999)}.00",
                             f"{r.randrange(1, 500)}.9"))
        if kind == "sku":
            return r.choice((f"SKU-{self._digits(8)}-{r.choice(('S', 'M', 'XL', 'BLK'))}",
                             f"{r.choice('ABCDEFGH')}{self._digits(2)}-{self._digits(4)}",
                             f"69{self._digits(11)}"))
        if kind == "hex_id":
            return "".join(r.choice("0123456789abcdef") for _ in range(r.choice((24, 32, 40))))
        if kind == "uuid":
            return str(uuid.UUID(int=r.getrandbits(128), version=4))
        if kind == "product_name":
            return r.choice(PRODUCTS)
        if kind == "company_name":
            return self.fake.company()
        if kind == "filler_text":
            return self.fake.sentence()
        raise ValueError(f"unknown negative kind {kind}")

    # -- records -----------------------------------------------------------------------------------------

    def _key(self, field_type: str, style: str) -> str:
        keys = KEYS[field_type]
        # A system mostly sticks to one style, with the odd key from another (an integrator's field).
        return self.rng.choice(keys[style] if self.rng.random() < 0.8 else keys[self.rng.choice(tuple(keys))])

    def _pi_field(self, field_type: str, style: str, allow_generic: bool) -> Field:
        value = self.pi[field_type]()
        if allow_generic and field_type in SHAPED_TYPES and self.rng.random() < 0.12:
            key = self.rng.choice(GENERIC_KEYS)
            return key, value, Label(field_type, value, key, "generic")
        key = self._key(field_type, style)
        return key, value, Label(field_type, value, key, "keyed")

    def _neg_field(self, kind: str, key: str) -> Field:
        value = self.negative(kind)
        return key, value, Negative(kind, value, key)

    def _business_negatives(self) -> list[Field]:
        """The non-PI fields an order or member record carries around its PI."""
        r = self.rng
        out: list[Field] = []
        if r.random() < 0.6:
            out.append(self._neg_field(r.choice(("order_no", "order_no_luhn")),
                                       r.choice(("orderNo", "order_id", "outTradeNo", "ddh", "订单号",
                                                 "tradeNo"))))
        if r.random() < 0.25:
            out.append(self._neg_field("tracking_no",
                                       r.choice(("waybillNo", "trackingNo", "expressNo", "运单号"))))
        if r.random() < 0.4:
            out.append(self._neg_field(r.choice(("ts_unix_ms", "ts_compact")),
                                       r.choice(("timestamp", "createTime", "ts", "updateTime", "reqTime"))))
        if r.random() < 0.3:
            out.append(self._neg_field("price", r.choice(("price", "amount", "totalFee", "金额"))))
        if r.random() < 0.15:
            out.append(self._neg_field("hotline", r.choice(("servicePhone", "hotline", "客服电话", "kfdh"))))
        if r.random() < 0.1:
            out.append(self._neg_field("code_12",
                                       r.choice(("invoiceCode", "fpdm", "发票代码", "batchNo"))))
        if r.random() < 0.1:
            out.append(self._neg_field("mobile_shaped", r.choice(("skuId", "goodsId", "barcode", "itemId"))))
        if r.random() < 0.15:
            out.append(self._neg_field("sku", r.choice(("sku", "skuCode", "productCode"))))
        if r.random() < 0.15:
            out.append(self._neg_field("hex_id", r.choice(("_id", "objectId", "md5", "hash"))))
        if r.random() < 0.2:
            out.append(self._neg_field("uuid", r.choice(("requestId", "traceId", "id", "sessionId"))))
        if r.random() < 0.08:
            out.append(self._neg_field("base64", r.choice(("avatar", "imgData", "payload", "sign"))))
        if r.random() < 0.12:
            out.append(self._neg_field("latin_text",
                                       r.choice(("description", "title", "comment", "userAgent"))))
        # Wrong check digits under the very keys the real values use: only the check digit tells.
        if r.random() < 0.06:
            out.append(self._neg_field("ric_bad_check", self._key("resident_id_cn", "en")))
        if r.random() < 0.05:
            out.append(self._neg_field("card_bad_luhn", self._key("bank_card", "en")))
        if r.random() < 0.03:
            out.append(self._neg_field("uscc_bad_check", self._key("org_credit_code", "en")))
        return out

    def record(self, style: str, allow_generic: bool = True) -> list[Field]:
        types = [t for t, w in TYPE_WEIGHTS.items() if self.rng.random() < w] or ["mobile_cn"]
        fields = [self._pi_field(t, style, allow_generic) for t in types]
        fields += self._business_negatives()
        if self.rng.random() < 0.2:
            fields.append(self._neg_field("filler_text", self.rng.choice(("status", "tag", "level"))))
        self.rng.shuffle(fields)
        fields = _dedupe_keys(fields)
        free_keys = [k for k in TEXT_KEYS if k not in {f[0] for f in fields}]
        if self.rng.random() < 0.15 and free_keys:
            # A remark with a sentence of its own: PI in free text inside a structured body.
            key = self.rng.choice(free_keys)
            text, labels, negatives = self.sentence(key)
            fields.append((key, text, None))
            self._pending.extend(labels)
            self._pending_neg.extend(negatives)
        return fields

    # -- free text -----------------------------------------------------------------------------------------

    def sentence(self, key: str | None) -> tuple[str, list[Label], list[Negative]]:
        """One line like 客户张伟，手机13800138000，身份证…，收货地址…。 with its labels and negatives."""
        r = self.rng
        parts: list[str] = []
        labels: list[Label] = []
        negatives: list[Negative] = []

        def pi(field_type: str, value: str, template: str) -> None:
            parts.append(template.format(value))
            labels.append(Label(field_type, value, key, "text"))

        def neg(kind: str, template: str) -> None:
            value = self.negative(kind)
            parts.append(template.format(value))
            negatives.append(Negative(kind, value, key))

        if r.random() < 0.8:
            pi("person_name", self.person_name(han_only=True),
               r.choice(("收件人：{}", "姓名：{}", "联系人{}", "收货人 {}", "客户{}", "寄件人{}")))
        if r.random() < 0.85:
            pi("mobile_cn", self.mobile(),
               r.choice(("手机{}", "电话：{}", "联系方式 {}", "手机号码{}", "tel:{}")))
        if r.random() < 0.5:
            pi("resident_id_cn", self.resident_id(), r.choice(("身份证{}", "证件号码：{}", "身份证号 {}")))
        if r.random() < 0.25:
            pi("email", self.email(), r.choice(("邮箱{}", "email: {}", "电子邮件 {} ")))
        if r.random() < 0.25:
            pi("bank_card", self.bank_card(), r.choice(("银行卡号{}", "卡号：{}", "退款至信用卡{}")))
        if r.random() < 0.5:
            pi("postal_address", self.address(composed_only=True),
               r.choice(("收货地址：{}", "地址{}", "寄往{}")))
        if r.random() < 0.05:
            pi("org_credit_code", self.credit_code(), "统一社会信用代码{}")
        if r.random() < 0.35:
            neg(r.choice(("order_no", "order_no_luhn")), r.choice(("订单号{}", "订单{}已发货")))
        if r.random() < 0.2:
            neg("tracking_no", "运单号{}")
        if r.random() < 0.2:
            neg("hotline", "客服热线{}")
        if r.random() < 0.2:
            neg("price", "实付{}元")
        if r.random() < 0.15:
            neg("ts_compact", "下单时间{}")
        if r.random() < 0.08:
            neg("ric_bad_check", "身份证{}")
        if r.random() < 0.08:
            neg("code_12", "发票代码{}")
        if not parts:
            neg("filler_text", "{}")
        # Clauses in a shuffled order, so no detector can lean on position.
        order = list(range(len(parts)))
        r.shuffle(order)
        return "，".join(parts[i] for i in order) + "。", labels, negatives

    # -- bodies --------------------------------------------------------------------------------------------

    def body(self, index: int) -> Body:
        fmt = self.rng.choices(tuple(FORMATS), weights=tuple(FORMATS.values()))[0]
        self._pending: list[Label] = []
        self._pending_neg: list[Negative] = []
        style = self.rng.choice(("en", "en", "py", "zh"))
        build = getattr(self, f"_{fmt}")
        content_type, data, fields = build(style)
        labels = [f[2] for f in fields if isinstance(f[2], Label)]
        negatives = [f[2] for f in fields if isinstance(f[2], Negative)]
        return Body(index, fmt, content_type, data, labels + self._pending, negatives + self._pending_neg)

    @staticmethod
    def _json_bytes(doc: object, ascii_only: bool) -> bytes:
        return json.dumps(doc, ensure_ascii=ascii_only, separators=(",", ":")).encode()

    def _json_value(self, value: object, item: Label | Negative | None) -> object:
        # JSON APIs send timestamps and prices as numbers; the walker turns them back into the same text.
        if isinstance(item, Negative) and item.kind in ("ts_unix_ms", "ts_compact"):
            return int(str(value)) if self.rng.random() < 0.6 else value
        return value

    def _json_object(self, style: str) -> tuple[str, bytes, list[Field]]:
        fields = self.record(style)
        doc = {k: self._json_value(v, item) for k, v, item in fields}
        return "application/json", self._json_bytes(doc, self.rng.random() < 0.2), fields

    def _json_records(self, style: str) -> tuple[str, bytes, list[Field]]:
        all_fields: list[Field] = []
        rows = []
        for _ in range(self.rng.randrange(2, 7)):
            fields = self.record(style)
            all_fields += fields
            rows.append({k: self._json_value(v, item) for k, v, item in fields})
        doc: object = rows
        if self.rng.random() < 0.6:
            # The usual API envelope around the list, with its own request id and timestamp.
            envelope = [self._neg_field("uuid", "requestId"), self._neg_field("ts_unix_ms", "timestamp")]
            all_fields += envelope
            doc = {"code": 0, "data": {"list": rows, "total": len(rows)}, **{k: v for k, v, _ in envelope}}
        return "application/json;charset=UTF-8", self._json_bytes(doc, self.rng.random() < 0.2), all_fields

    def _json_nested(self, style: str) -> tuple[str, bytes, list[Field]]:
        """An order: receiver and buyer sub-objects, items whose `name` is a product, a company block."""
        fields: list[Field] = []
        receiver = self.record(style, allow_generic=False)
        fields += receiver
        order = _dedupe_keys(self._business_negatives() or [self._neg_field("order_no", "orderNo")])
        fields += order
        items = []
        for _ in range(self.rng.randrange(1, 4)):
            item = [self._neg_field("product_name", "name"), self._neg_field("sku", "skuId"),
                    self._neg_field("price", "price")]
            fields += item
            items.append({k: v for k, v, _ in item})
        doc: dict[str, object] = {k: self._json_value(v, it) for k, v, it in order}
        doc["receiver"] = {k: self._json_value(v, it) for k, v, it in receiver}
        doc["items"] = items
        if self.rng.random() < 0.4:
            company = [self._neg_field("company_name", "name"),
                       self._pi_field("org_credit_code", style, False)]
            fields += company
            doc["company"] = {k: v for k, v, _ in company}
        return "application/json", self._json_bytes(doc, self.rng.random() < 0.2), fields

    def _form(self, style: str, gbk: bool) -> tuple[str, bytes, list[Field]]:
        fields = self.record(style)
        pairs = [(k, str(v)) for k, v, _ in fields]
        if gbk:
            try:
                return ("application/x-www-form-urlencoded; charset=GBK",
                        urlencode(pairs, encoding="gbk").encode("ascii"), fields)
            except UnicodeEncodeError:
                log.debug("body value outside GBK: sent as UTF-8")
        return "application/x-www-form-urlencoded", urlencode(pairs).encode("ascii"), fields

    def _form_utf8(self, style: str) -> tuple[str, bytes, list[Field]]:
        return self._form(style, gbk=False)

    def _form_gbk(self, style: str) -> tuple[str, bytes, list[Field]]:
        return self._form(style, gbk=True)

    def _csv(self, style: str) -> tuple[str, bytes, list[Field]]:
        """An export: one header (the first record's keys plus business columns), one row per person."""
        columns = [t for t in ("person_name", "mobile_cn", "resident_id_cn", "postal_address", "email",
                               "bank_card") if self.rng.random() < TYPE_WEIGHTS[t]] or ["mobile_cn"]
        keys = {t: self._key(t, style) for t in columns}
        business = (("order_no", "orderNo"), ("ts_compact", "createTime"), ("price", "amount"),
                    ("tracking_no", "waybillNo"))
        neg_cols = self.rng.sample(business, self.rng.randrange(0, 3))
        header = [keys[t] for t in columns] + [k for _, k in neg_cols]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(header)
        fields: list[Field] = []
        for _ in range(self.rng.randrange(3, 11)):
            row = []
            for t in columns:
                value = self.pi[t]()
                row.append(value)
                fields.append((keys[t], value, Label(t, value, keys[t], "keyed")))
            for kind, key in neg_cols:
                field_ = self._neg_field(kind, key)
                row.append(str(field_[1]))
                fields.append(field_)
            writer.writerow(row)
        return "text/csv; charset=utf-8", buf.getvalue().encode(), fields

    def _text(self, style: str) -> tuple[str, bytes, list[Field]]:
        lines = []
        for _ in range(self.rng.randrange(1, 6)):
            if lines and self.rng.random() < 0.15:
                lines.append(self.fake.sentence())   # filler between the lines that matter
                continue
            line, labels, negatives = self.sentence(None)
            lines.append(line)
            self._pending.extend(labels)
            self._pending_neg.extend(negatives)
        return "text/plain; charset=utf-8", "\n".join(lines).encode(), []


def _dedupe_keys(fields: list[Field]) -> list[Field]:
    """One value per key within an object (two types can draw the same key, e.g. `tel`)."""
    seen: set[str] = set()
    out = []
    for f in fields:
        if f[0] not in seen:
            seen.add(f[0])
            out.append(f)
    return out


def generate(n: int, seed: int = 7) -> Iterator[Body]:
    """`n` labeled bodies; the same (n, seed) gives the same bodies and labels, byte for byte."""
    gen = CorpusGenerator(seed)
    for i in range(n):
        yield gen.body(i)


def dump(bodies: list[Body], path: Path) -> Path:
    """Write bodies as JSON Lines — only under bench/out/ (git-ignored): the corpus holds raw synthetic PI."""
    path = path.resolve()
    if not path.is_relative_to(OUT_DIR.resolve()):
        raise ValueError(f"refusing to write the corpus outside {OUT_DIR}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for b in bodies:
            doc = asdict(b)
            doc["data"] = b.data.decode("utf-8", errors="replace") if "gbk" not in b.content_type.lower() \
                else base64.b64encode(b.data).decode()
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return path


def summary(bodies: list[Body]) -> dict[str, object]:
    return {
        "bodies": len(bodies),
        "bytes": sum(len(b.data) for b in bodies),
        "formats": dict(Counter(b.fmt for b in bodies)),
        "labels": dict(Counter(lb.field_type for b in bodies for lb in b.labels)),
        "labels_where": dict(Counter(lb.where for b in bodies for lb in b.labels)),
        "negatives": dict(Counter(ng.kind for b in bodies for ng in b.negatives)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="labeled PI corpus for bench/accuracy.py")
    p.add_argument("--bodies", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dump", action="store_true", help="write bench/out/corpus-seed<seed>-<n>.jsonl")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bodies = list(generate(args.bodies, args.seed))
    print(json.dumps(summary(bodies), ensure_ascii=False, indent=2))
    if args.dump:
        print(f"wrote {dump(bodies, OUT_DIR / f'corpus-seed{args.seed}-{args.bodies}.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
