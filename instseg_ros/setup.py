from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'instseg_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['models/*.pth', 'models/*.json', 'models/*.md']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
        # instseg-bag registers the message types from these files where instseg_msgs is absent
        ('share/' + PACKAGE + '/msg', glob('../instseg_msgs/msg/*.msg')),
    ],
    install_requires=['setuptools', 'rosbags>=0.11.9,<0.12', 'tqdm>=4.66,<5', 'scipy>=1.11,<2'],
    extras_require={'test': ['pytest'],
                    'export': ['onnx>=1.16', 'onnxruntime>=1.18', 'openvino>=2024.0']},
    zip_safe=False,
    maintainer='instseg_ros maintainers',
    maintainer_email='maintainers@instseg-ros.dev',
    description='YOLACT / YOLACT++ instance segmentation node for ROS 2',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'yolact_node = instseg_ros.ros.node:main',
            'yolact_lifecycle_node = instseg_ros.ros.lifecycle_node:main',
            'synthetic_camera = instseg_ros.ros.synthetic_camera:main',
            'instseg-train = instseg_ros.training.train:main',
            'instseg-eval = instseg_ros.training.evaluate:main',
            'instseg-synth = instseg_ros.synth.dataset:main',
            'instseg-bag = instseg_ros.tools.bag:main',
            'instseg-synth-bag = instseg_ros.tools.synth_bag:main',
            'instseg-export = instseg_ros.tools.export:main',
            'instseg-echo = instseg_ros.ros.echo:main',
        ],
    },
)
