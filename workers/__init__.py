"""Where does a candidate get trained? (CIFAR-100 proxy, ImageNet full training, Ray.)"""
