def test_huey_is_immediate_in_tests():
    from huey.contrib.djhuey import HUEY

    assert HUEY.immediate
