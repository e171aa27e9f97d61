"""Pair filters on language pairs whose non-English side is not written in the Latin alphabet: good pairs pass,
pairs in the wrong language or script, copied or swapped, are rejected with a reason that says so."""

import pytest

from tasks.config import PipelineParams
from tasks.data import langid
from tasks.data.filters import PairChecker

# UI messages and their translations, the Chinese ones 2.4 to 4.7 times shorter in characters than the English.
EN = ["The file could not be opened because it is locked by another process.",
      "Are you sure you want to delete all selected items permanently?",
      "Please check your network connection and try again later.",
      "Settings saved successfully.",
      "No results were found for your search.",
      "The printer is out of paper."]
TRANSLATIONS = {
    "zh": ["无法打开文件，因为它已被另一个进程锁定。", "确定要永久删除所有选定的项目吗？", "请检查网络连接，然后稍后重试。",
           "设置已成功保存。", "未找到与您的搜索匹配的结果。", "打印机缺纸。"],
    "ja": ["ファイルは別のプロセスによってロックされているため、開けませんでした。", "選択したすべての項目を完全に削除してもよろしいですか？",
           "ネットワーク接続を確認して、後でもう一度お試しください。", "設定を保存しました。", "検索結果が見つかりませんでした。",
           "プリンターの用紙がありません。"],
    "ko": ["다른 프로세스에서 잠겨 있어 파일을 열 수 없습니다.", "선택한 항목을 모두 영구적으로 삭제하시겠습니까?",
           "네트워크 연결을 확인하고 나중에 다시 시도하십시오.", "설정이 저장되었습니다.", "검색 결과가 없습니다.",
           "프린터에 용지가 없습니다."],
    "ar": ["تعذر فتح الملف لأنه مؤمّن بواسطة عملية أخرى.", "هل أنت متأكد من أنك تريد حذف كل العناصر المحددة نهائيًا؟",
           "يرجى التحقق من اتصال الشبكة والمحاولة مرة أخرى لاحقًا.", "تم حفظ الإعدادات بنجاح.",
           "لم يتم العثور على نتائج لبحثك.", "نفد الورق من الطابعة."],
    "ru": ["Не удалось открыть файл, так как он заблокирован другим процессом.",
           "Вы действительно хотите безвозвратно удалить все выбранные элементы?",
           "Проверьте подключение к сети и повторите попытку позже.", "Параметры успешно сохранены.",
           "По вашему запросу ничего не найдено.", "В принтере закончилась бумага."],
    "hi": ["फ़ाइल नहीं खोली जा सकी क्योंकि यह किसी अन्य प्रक्रिया द्वारा लॉक है।",
           "क्या आप वाकई सभी चयनित आइटम स्थायी रूप से हटाना चाहते हैं?",
           "कृपया अपना नेटवर्क कनेक्शन जांचें और बाद में फिर से प्रयास करें।", "सेटिंग्स सफलतापूर्वक सहेजी गईं।",
           "आपकी खोज के लिए कोई परिणाम नहीं मिला।", "प्रिंटर में कागज़ खत्म हो गया है।"],
    "th": ["ไม่สามารถเปิดไฟล์ได้เนื่องจากถูกล็อกโดยกระบวนการอื่น",
           "คุณแน่ใจหรือไม่ว่าต้องการลบรายการที่เลือกทั้งหมดอย่างถาวร",
           "โปรดตรวจสอบการเชื่อมต่อเครือข่ายแล้วลองอีกครั้งในภายหลัง", "บันทึกการตั้งค่าเรียบร้อยแล้ว",
           "ไม่พบผลลัพธ์สำหรับการค้นหาของคุณ", "เครื่องพิมพ์กระดาษหมด"],
}
CODES_OF_THREE = {"zh": "zho", "ja": "jpn", "ko": "kor", "ar": "ara", "ru": "rus", "hi": "hin", "th": "tha"}


def checker(source_lang: str, target_lang: str) -> PairChecker:
    return PairChecker(PipelineParams(source_lang=source_lang, target_lang=target_lang))


def reasons(check: PairChecker, source: str, target: str) -> dict[str, str]:
    return dict(check.reasons(source, target))


@pytest.mark.parametrize("lang", sorted(TRANSLATIONS))
@pytest.mark.parametrize("english_is", ["source", "target"])
def test_good_pairs_pass_every_filter_in_both_directions(lang, english_is):
    check = checker("en", lang) if english_is == "source" else checker(lang, "en")
    for english, other in zip(EN, TRANSLATIONS[lang]):
        pair = (english, other) if english_is == "source" else (other, english)
        assert check.reasons(*pair) == [], pair


@pytest.mark.parametrize("source, target, lang", [
    ("Yes", "是", "zh"), ("Open", "开", "zh"), ("Yes", "예", "ko"), ("OK", "确定", "zh"),
    ("%(count)d files", "%(count)d 个文件", "zh"), ("%(name)s: %(value)s", "%(name)s：%(value)s", "ja"),
    ("π ≈ 3.14", "π ≈ 3,14", "ru"),
])
def test_short_dense_words_and_sides_without_words_pass(source, target, lang):
    assert checker("en", lang).reasons(source, target) == []


@pytest.mark.parametrize("lang", sorted(TRANSLATIONS))
def test_a_truncated_translation_is_still_a_length_ratio(lang):
    found = reasons(checker("en", lang), EN[0] + " " + EN[1], TRANSLATIONS[lang][3])
    assert "length_ratio" in found


def test_a_length_ratio_that_weighs_dense_characters_says_how():
    found = reasons(checker("en", "zh"), EN[0] + " " + EN[1], "设置已保存。")
    assert "a Han character counts as 3 characters" in found["length_ratio"]


@pytest.mark.parametrize("lang", sorted(TRANSLATIONS))
@pytest.mark.parametrize("bad", ["copied source", "copied source, lower case", "swapped columns", "Japanese",
                                 "Chinese"])
def test_a_short_side_in_the_wrong_script_or_language_is_rejected(lang, bad):
    english, other = EN[3], TRANSLATIONS[lang][3]  # 'Settings saved successfully.': under langid_min_letters
    source, target = {"copied source": (english, english.rstrip(".")),
                      "copied source, lower case": (english, english.lower()),
                      "swapped columns": (other, english),
                      "Japanese": (english, TRANSLATIONS["ja"][3]), "Chinese": (english, TRANSLATIONS["zh"][3]),
                      }[bad]
    if target == other:
        pytest.skip("that is the right language")
    if (lang, bad) == ("ja", "Chinese"):
        pytest.skip("Han only, no kana, 8 characters: not judged by language ID (too short), nor by script")
    found = reasons(checker("en", lang), source, target)
    assert "wrong_language" in found, found


def test_the_reason_names_the_script_found_and_the_one_expected():
    found = reasons(checker("en", "zh"), "设置已成功保存。", "Settings saved successfully.")
    assert found["wrong_language"] == ("source is written in Han, not in Latin as en is; "
                                       "target is written in Latin, not in Han as zh is")
    found = reasons(checker("en", "hi"), "Settings saved", "Settings saved ho gayi")  # a romanization
    assert found["wrong_language"] == "target is written in Latin, not in Devanagari as hi is"


def test_a_source_copied_into_the_target_of_a_pair_from_another_script_is_rejected():
    for lang, translations in TRANSLATIONS.items():
        found = reasons(checker(lang, "en"), translations[3], translations[3].rstrip("。.") + " !")
        assert "wrong_language" in found, lang


def test_a_short_chinese_side_is_not_judged_by_language_id_which_reads_it_as_japanese():
    assert langid.shared().confident_language(["未找到与您的搜索匹配的结果。（第 1 项）"], 0.8) == ["ja"]
    assert checker("en", "zh").reasons("No results were found for your search. (item 1)",
                                       "未找到与您的搜索匹配的结果。（第 1 项）") == []


@pytest.mark.parametrize("lang", sorted(CODES_OF_THREE))
def test_a_language_configured_by_its_three_letter_code_gets_language_id(lang):
    code = CODES_OF_THREE[lang]
    assert langid.shared().knows(code) and langid.label(code) == lang
    check = checker("en", code)
    assert check.reasons(EN[0], TRANSLATIONS[lang][0]) == []
    wrong = TRANSLATIONS["ru" if lang != "ru" else "ar"][0]
    assert "wrong_language" in reasons(check, EN[0], wrong)


def test_russian_read_in_the_wrong_code_page_is_an_encoding_error():
    check = checker("en", "ru")
    for english, russian in zip(EN, TRANSLATIONS["ru"]):
        garbled = russian.encode("utf-8").decode("cp1251", errors="replace")
        assert "cp1251" in reasons(check, english, garbled).get("encoding", ""), garbled
    for word in ("Рік тому", "КРІСЛО на складі", "ООО «РС» и партнёры", "Сёмга свежая"):  # real words pass
        assert "encoding" not in reasons(check, "some text", word)


def test_language_id_judges_a_side_of_a_language_configured_by_its_three_letter_code():
    ukrainian = "Не вдалося відкрити файл, оскільки його заблоковано іншим процесом."  # Cyrillic: the script passes
    found = reasons(checker("eng", "rus"), EN[0], ukrainian)
    assert found["wrong_language"].startswith("target looks like uk") and found["wrong_language"].endswith("rus")


@pytest.mark.parametrize("source, target, lang", [
    ("Wi-Fi", "WLAN", "zh"), ("Text message", "SMS", "ru"), ("Website", "URL", "ko"), ("Sign-in page", "Login", "ja"),
    ("Pictures", "DCIM", "ar"),
])
def test_a_word_kept_in_latin_letters_in_a_language_of_another_script_passes(source, target, lang):
    """A brand, an acronym or a loanword that the translation keeps in Latin letters is a good pair: it is no copy of
    the source, and one word says nothing of the language of a sentence."""
    assert checker("en", lang).reasons(source, target) == []


@pytest.mark.parametrize("source, target, lang", [
    ("Open file", "open", "zh"), ("Settings", "settings.", "ja"), ("Email", "E-mail", "ru"),
    ("Save all changes", "Save", "ko"),
])
def test_a_copied_word_in_latin_letters_is_still_the_wrong_language(source, target, lang):
    assert "wrong_language" in reasons(checker("en", lang), source, target)


@pytest.mark.parametrize("source, target", [("Back", "返回上一页"), ("Quit", "退出应用程序"), ("Help", "帮助与反馈")])
def test_a_pair_whose_sides_have_at_most_12_characters_is_exempt_from_the_length_ratio(source, target):
    """As the setting says (max_length_ratio): a 5-character Chinese side weighs 15, but the exemption is for short
    strings, whose ratios say little, and it was counted in characters."""
    assert checker("en", "zh").reasons(source, target) == []
