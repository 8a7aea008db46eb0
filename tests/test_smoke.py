import scratchgd as sg


def test_train_digits_smoke():
    train, test = sg.datasets.digits()
    model = sg.MLP([64, 32, 10], seed=0)
    hist = sg.fit(model, train, sg.MiniBatchSGD(lr=0.1, batch_size=32), epochs=2, progress=False)
    assert hist.epochs == 2 and hist.iterations == 2 * 45
