; Inno Setup script for faceapp (Windows x64). Not built by CI.
; Build the one-folder app first, from the repository root in a Windows checkout:
;   .venv\Scripts\python -m PyInstaller --noconfirm packaging\faceapp.spec
;   dist\faceapp\faceapp.exe --self-test
; then compile this script (Inno Setup 6):
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" packaging\windows\faceapp.iss
; The installer lands in dist\faceapp-<version>-setup.exe.

#define AppName "faceapp"
#define AppVersion "0.1.0"
#define RepoRoot "..\.."

[Setup]
AppId={{6F1C2E7A-4B0D-4C8E-9E0A-FACEA0000001}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=faceapp developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
PrivilegesRequiredOverridesAllowed=dialog
OutputDir={#RepoRoot}\dist
OutputBaseFilename={#AppName}-{#AppVersion}-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\faceapp.exe

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; the whole PyInstaller one-folder build: faceapp.exe and _internal\ (models, samples, Qt)
Source: "{#RepoRoot}\dist\faceapp\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\faceapp.exe"
Name: "{group}\{#AppName} self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\faceapp.exe"" --self-test"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\faceapp.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\faceapp.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; The user's galleries and settings (%LOCALAPPDATA%\faceapp) are personal data: the
; uninstaller removes only what it installed ({app}) and leaves them alone.
